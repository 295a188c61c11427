"""TF1 optimizers: gradients in, assign ops out. Update rules are exactly TF1's."""
from __future__ import annotations

import re

from ..autodiff import gradients
from ..errors import GraphflowError
from ..graph import Operation, Tensor
from ..ops.core import as_tensor, cast, constant, group
from ..ops.elementwise import rsqrt, sqrt
from ..variables import Variable, trainable_variables


def _tf1_order(var_list, global_step):
    """(var_list, global_step), reading TF1's `minimize(loss, global_step)` positional order:
    an integer Variable where graphflow's var_list goes is the global step."""
    if isinstance(var_list, Variable) and var_list.dtype.is_integer and global_step is None:
        return None, var_list
    return var_list, global_step


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
        """One op that applies every (gradient, variable) update; with global_step (an integer
        Variable, e.g. gf.train.get_or_create_global_step()) it also adds one to the step."""
        grads_and_vars = list(grads_and_vars)
        pairs = [(g, v) for g, v in grads_and_vars if g is not None]
        if not pairs:
            names = [v.op.name for _, v in grads_and_vars]
            raise GraphflowError(f"no gradients for any variable ({', '.join(names)}); check that "
                                 "the loss depends on them")
        if global_step is not None and not (isinstance(global_step, Variable)
                                            and global_step.dtype.is_integer):
            raise GraphflowError(f"global_step must be an integer gf.Variable (see "
                                 f"gf.train.get_or_create_global_step()), got {global_step!r}")
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
        """compute_gradients then apply_gradients: one op that takes one training step. TF1's
        positional order also works: `minimize(loss, step)` with an integer Variable in second
        place is the global step."""
        var_list, global_step = _tf1_order(var_list, global_step)
        return self.apply_gradients(self.compute_gradients(loss, var_list), global_step, name)

    def get_slot(self, var: Variable, name: str) -> Variable | None:
        """The optimizer's extra variable for `var` ('m', 'v', 'momentum'), or None."""
        return self._slots.get((var, name))

    def _slot(self, var: Variable, slot: str, suffix: str, fill: float = 0.0) -> Variable:
        """A per-variable state variable `<var>/<optimizer name><suffix>`, filled with `fill`."""
        if (var, slot) not in self._slots:
            graph = var.graph
            with graph.as_default(), graph.name_scope(None), graph.control_dependencies(None):
                init = constant(fill, var.dtype, "zeros" if fill == 0 else "Const", var.shape)
                self._slots[(var, slot)] = Variable(init, name=f"{var.op.name}/{self._name}{suffix}",
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


class RMSPropOptimizer(Optimizer):
    """TF1's RMSProp (the mean square starts at ones, as TF1 initializes its 'rms' slot):
    ms = ms + (g^2 - ms) * (1 - decay);  mom = momentum * mom + lr * g / sqrt(ms + eps);
    var -= mom. centered=True also tracks mg = mg + (g - mg) * (1 - decay) and uses
    sqrt(ms - mg^2 + eps)."""

    def __init__(self, learning_rate, decay: float = 0.9, momentum: float = 0.0,
                 epsilon: float = 1e-10, centered: bool = False, name: str = "RMSProp") -> None:
        super().__init__(name)
        self.learning_rate, self.decay, self.momentum, self.epsilon = (learning_rate, decay,
                                                                       momentum, epsilon)
        self.centered = centered

    def _apply(self, grad, var):
        ms = self._slot(var, "rms", "", fill=1.0)
        mom = self._slot(var, "momentum", "_1")
        lr, rho, momentum, eps = (self._lr(x, var) for x in (self.learning_rate, self.decay,
                                                              self.momentum, self.epsilon))
        ms_t = ms.assign(ms + (grad * grad - ms) * (1.0 - rho))
        denom = ms_t + eps
        if self.centered:
            mg = self._slot(var, "mg", "_2")
            mg_t = mg.assign(mg + (grad - mg) * (1.0 - rho))
            denom = ms_t - mg_t * mg_t + eps
        mom_t = mom.assign(momentum * mom + lr * grad / sqrt(denom))
        return var.assign_sub(mom_t)


class AdagradOptimizer(Optimizer):
    """TF1's Adagrad: accum += g^2;  var -= lr * g / sqrt(accum), the accumulator starting
    at initial_accumulator_value (no epsilon, as TF1)."""

    def __init__(self, learning_rate, initial_accumulator_value: float = 0.1,
                 name: str = "Adagrad") -> None:
        if initial_accumulator_value <= 0:
            raise GraphflowError(f"AdagradOptimizer: initial_accumulator_value must be > 0, got "
                                 f"{initial_accumulator_value}")
        super().__init__(name)
        self.learning_rate = learning_rate
        self.initial_accumulator_value = initial_accumulator_value

    def _apply(self, grad, var):
        accum = self._slot(var, "accumulator", "", fill=self.initial_accumulator_value)
        accum_t = accum.assign_add(grad * grad)
        return var.assign_sub(self._lr(self.learning_rate, var) * grad * rsqrt(accum_t))


class AdamWOptimizer(AdamOptimizer):
    """Adam with decoupled weight decay, exactly torch.optim.AdamW (and minGPT):

        var = var * (1 - lr * weight_decay)                      (decayed variables only)
        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        var -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

    The decay is scaled by the learning rate (so a schedule scales it too) and the gradient is
    taken before the decay. (tf.contrib.opt.AdamWOptimizer(weight_decay, learning_rate) differs:
    its decay is not scaled by the learning rate; this class follows torch, as minGPT does.)

    Which variables decay: all of them, less those matched by
    `exclude_from_weight_decay` (a list of regular expressions searched in the variable's name,
    e.g. ["bias", "ln"], or a callable var -> True to exclude), and, when `decay_var_list` is
    given to minimize/apply_gradients, only those in it (TF-Addons' AdamW argument).
    """

    def __init__(self, learning_rate, weight_decay, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, exclude_from_weight_decay=None,
                 name: str = "AdamW") -> None:
        super().__init__(learning_rate, beta1, beta2, epsilon, name)
        self.weight_decay = weight_decay
        self.exclude_from_weight_decay = exclude_from_weight_decay
        self._decay_var_list: list | None = None

    def decays(self, var: Variable) -> bool:
        """Whether var gets the weight decay in this optimizer's updates."""
        if self._decay_var_list is not None and not any(var is v for v in self._decay_var_list):
            return False
        rule = self.exclude_from_weight_decay
        if rule is None:
            return True
        if callable(rule):
            return not rule(var)
        if isinstance(rule, str):
            rule = [rule]
        return not any(re.search(pattern, var.op.name) for pattern in rule)

    def apply_gradients(self, grads_and_vars, global_step: Variable | None = None,
                        name: str | None = None, decay_var_list=None) -> Operation:
        """As Optimizer.apply_gradients; decay_var_list limits the weight decay to those."""
        self._decay_var_list = None if decay_var_list is None else list(decay_var_list)
        try:
            return super().apply_gradients(grads_and_vars, global_step, name)
        finally:
            self._decay_var_list = None

    def minimize(self, loss: Tensor, var_list=None, global_step: Variable | None = None,
                 name: str | None = None, decay_var_list=None) -> Operation:
        """As Optimizer.minimize; decay_var_list limits the weight decay to those variables."""
        var_list, global_step = _tf1_order(var_list, global_step)
        return self.apply_gradients(self.compute_gradients(loss, var_list), global_step, name,
                                    decay_var_list)

    def _apply(self, grad, var):
        b1p, b2p = self._beta_powers(var)
        m, v = self._slot(var, "m", ""), self._slot(var, "v", "_1")
        lr, b1, b2, eps = (self._lr(x, var) for x in (self.learning_rate, self.beta1, self.beta2,
                                                       self.epsilon))
        m_t = m.assign(b1 * m + (1.0 - b1) * grad)
        v_t = v.assign(b2 * v + (1.0 - b2) * (grad * grad))
        step = (lr / (1.0 - b1p)) * m_t / (sqrt(v_t) / sqrt(1.0 - b2p) + eps)
        if not self.decays(var):
            return var.assign_sub(step)
        return var.assign(var * (1.0 - lr * self._lr(self.weight_decay, var)) - step)
