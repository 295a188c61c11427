"""TF1 optimizers: gradients in, assign ops out. Update rules are exactly TF1's."""
from __future__ import annotations

from ..autodiff import gradients
from ..errors import GraphflowError
from ..graph import Operation, Tensor
from ..ops.core import as_tensor, cast, group
from ..ops.elementwise import sqrt
from ..variables import Variable, trainable_variables


class Optimizer:
    """Base class: subclasses define `_apply(grad, var)` returning an update op or tensor."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._slots: dict[tuple[Variable, str], Variable] = {}

    def compute_gradients(self, loss: Tensor, var_list=None) -> list[tuple[Tensor | None, Variable]]:
        """(gradient, variable) pairs; the gradient is None where loss does not depend on it."""
        loss = as_tensor(loss)
        var_list = list(var_list) if var_list is not None else trainable_variables(loss.graph)
        if not var_list:
            raise GraphflowError("no variables to optimize: create trainable gf.Variables first")
        for v in var_list:
            if not isinstance(v, Variable):
                raise TypeError(f"var_list holds {v!r}, which is not a gf.Variable")
        with loss.graph.as_default():
            grads = gradients(loss, var_list)
        return list(zip(grads, var_list))

    def apply_gradients(self, grads_and_vars, global_step: Variable | None = None,
                        name: str | None = None) -> Operation:
        """One op that applies every (gradient, variable) update."""
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if not pairs:
            names = [v.op.name for _, v in grads_and_vars]
            raise GraphflowError(f"no gradients for any variable ({', '.join(names)}); check that "
                                 "the loss depends on them")
        graph = pairs[0][1].graph
        updates = []
        with graph.as_default(), graph.name_scope(name or self._name):
            self._prepare()
            for g, v in pairs:
                with graph.name_scope(f"update_{v.op.name}"):
                    updates.append(self._apply(as_tensor(g), v))
            updates.extend(self._finish())
            if global_step is not None:
                updates.append(global_step.assign_add(1))
            return group(updates, name="train")

    def minimize(self, loss: Tensor, var_list=None, global_step: Variable | None = None,
                 name: str | None = None) -> Operation:
        """compute_gradients then apply_gradients: one op that takes one training step."""
        return self.apply_gradients(self.compute_gradients(loss, var_list), global_step, name)

    def get_slot(self, var: Variable, name: str) -> Variable | None:
        """The optimizer's extra variable for `var` ('m', 'v', 'momentum'), or None."""
        return self._slots.get((var, name))

    def _slot(self, var: Variable, slot: str, suffix: str) -> Variable:
        if (var, slot) not in self._slots:
            with var.graph.as_default(), var.graph.name_scope(None):
                from ..ops.core import zeros
                self._slots[(var, slot)] = Variable(zeros(var.shape, var.dtype),
                                                    name=f"{var.op.name}/{self._name}{suffix}",
                                                    trainable=False)
        return self._slots[(var, slot)]

    def _lr(self, value, var: Variable) -> Tensor:
        """A hyperparameter as var's dtype (it may be a Python number or a tensor)."""
        if isinstance(value, Tensor):
            return cast(value, var.dtype)
        return as_tensor(value, var.dtype)

    def _prepare(self) -> None:
        pass

    def _finish(self) -> list:
        return []

    def _apply(self, grad: Tensor, var: Variable):
        raise NotImplementedError


class GradientDescentOptimizer(Optimizer):
    """var -= lr * grad."""

    def __init__(self, learning_rate, name: str = "GradientDescent") -> None:
        super().__init__(name)
        self.learning_rate = learning_rate

    def _apply(self, grad, var):
        return var.assign_sub(self._lr(self.learning_rate, var) * grad)


class MomentumOptimizer(Optimizer):
    """accum = momentum * accum + grad; var -= lr * accum (TF1: no dampening, no Nesterov)."""

    def __init__(self, learning_rate, momentum, use_nesterov: bool = False,
                 name: str = "Momentum") -> None:
        super().__init__(name)
        self.learning_rate, self.momentum, self.use_nesterov = learning_rate, momentum, use_nesterov

    def _apply(self, grad, var):
        accum = self._slot(var, "momentum", "")
        lr, m = self._lr(self.learning_rate, var), self._lr(self.momentum, var)
        accum_t = accum.assign(accum * m + grad)
        if self.use_nesterov:  # TF1: var -= lr * (grad + momentum * accum_t)
            return var.assign_sub(lr * (grad + m * accum_t))
        return var.assign_sub(lr * accum_t)


class AdamOptimizer(Optimizer):
    """TF1's Adam (epsilon-hat form):
    lr_t = lr * sqrt(1 - beta2^t) / (1 - beta1^t)
    m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;  var -= lr_t m / (sqrt(v) + eps)
    """

    def __init__(self, learning_rate=0.001, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, name: str = "Adam") -> None:
        super().__init__(name)
        self.learning_rate, self.beta1, self.beta2, self.epsilon = (learning_rate, beta1, beta2,
                                                                    epsilon)
        self._powers: dict = {}

    def _prepare(self) -> None:
        self._step_powers = []

    def _beta_powers(self, var: Variable) -> tuple[Variable, Variable]:
        key = var.dtype
        if key not in self._powers:
            with var.graph.name_scope(None):
                self._powers[key] = (
                    Variable(as_tensor(self.beta1, var.dtype), name="beta1_power", trainable=False),
                    Variable(as_tensor(self.beta2, var.dtype), name="beta2_power", trainable=False))
        powers = self._powers[key]
        if powers not in self._step_powers:
            self._step_powers.append(powers)
        return powers

    def _apply(self, grad, var):
        b1p, b2p = self._beta_powers(var)
        m, v = self._slot(var, "m", ""), self._slot(var, "v", "_1")
        lr, b1, b2, eps = (self._lr(x, var) for x in (self.learning_rate, self.beta1, self.beta2,
                                                       self.epsilon))
        lr_t = lr * sqrt(1.0 - b2p) / (1.0 - b1p)
        m_t = m.assign(b1 * m + (1.0 - b1) * grad)
        v_t = v.assign(b2 * v + (1.0 - b2) * (grad * grad))
        return var.assign_sub(lr_t * m_t / (sqrt(v_t) + eps))

    def _finish(self) -> list:
        # reads see start-of-run values, so these advance t after this step's updates
        return [p.assign(p * self._lr(beta, p)) for b1p, b2p in self._step_powers
                for p, beta in ((b1p, self.beta1), (b2p, self.beta2))]
