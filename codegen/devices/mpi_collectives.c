/* graphflow's MPI collectives as host functions of the cpu device's native launch sequence.

   Built with mpicc (cached like the emulator's modules, see mpi_native.py) and linked to the
   same libmpi as mpi4py, which owns MPI_Init and hands over its communicator (comm.py2f()).
   Each function is `int f(void* block, char* error, int error_bytes)`: 0 on success, else
   nonzero with the reason written to `error`. A block is a gf_mpi_args: the two buffer slots
   come first (bound like a kernel's arguments, rewritten when a variable's buffer changes).
   Every wait polls MPI_Test until `timeout` seconds have passed, then fails with
   `timeout_message`, so a dead or stalled rank gives the same clear error as the Python path. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

typedef struct {
  MPI_Request request;
  int active;
} gf_mpi_pending;

typedef struct {
  void* src;                   /* slot 0: the op's input buffer */
  void* dst;                   /* slot 1: the op's output buffer (may equal src) */
  long long count;             /* elements */
  long long elem_bytes;        /* 4: float32, 8: float64 (any size for a broadcast) */
  long long comm;              /* the communicator's Fortran handle (mpi4py's py2f()) */
  long long root;              /* broadcast: the root rank */
  double timeout;              /* seconds any one wait may take */
  const char* timeout_message; /* the whole error text for a wait past the timeout */
  const char* label;           /* what other errors call this collective */
  gf_mpi_pending* pending;     /* a bucket's request, shared by its start and its wait */
  long long* counts;           /* graphflow.distributed.comm's counters (see comm.COUNTERS) */
} gf_mpi_args;

enum { GF_ALLREDUCE_CALLS, GF_ALLREDUCE_BYTES, GF_BROADCAST_CALLS, GF_BROADCAST_BYTES, GF_NATIVE_CALLS };

int gf_mpi_args_bytes(void) { return (int)sizeof(gf_mpi_args); }
int gf_mpi_pending_bytes(void) { return (int)sizeof(gf_mpi_pending); }
int gf_mpi_library_version(char* out, int n) {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(text, &len);
  snprintf(out, (size_t)n, "%s", text);
  return len;
}

static int failed(int rc, const gf_mpi_args* a, const char* what, char* err, int n) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error %d", rc);
  snprintf(err, (size_t)n, "%s: %s failed: %s", a->label, what, text);
  return 1;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Poll until done or the timeout: pauses grow from 0 to 1 ms, as comm.wait's do. */
static int wait_bounded(MPI_Request* request, const gf_mpi_args* a, char* err, int n) {
  double deadline = now() + a->timeout, pause = 0.0;
  for (;;) {
    int done = 0, rc = MPI_Test(request, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return failed(rc, a, "MPI_Test", err, n);
    if (done) return 0;
    if (now() > deadline) {
      snprintf(err, (size_t)n, "%s", a->timeout_message);
      return 1;
    }
    if (pause > 0) {
      struct timespec t = {0, (long)(pause * 1e9)};
      nanosleep(&t, 0);
    }
    pause = pause * 2 + 1e-5;
    if (pause > 1e-3) pause = 1e-3;
  }
}

static MPI_Datatype float_type(const gf_mpi_args* a) { return a->elem_bytes == 8 ? MPI_DOUBLE : MPI_FLOAT; }

static void copy_in(const gf_mpi_args* a) {
  if (a->src != a->dst) memcpy(a->dst, a->src, (size_t)(a->count * a->elem_bytes));
}

static int start(gf_mpi_args* a, gf_mpi_pending* p, char* err, int n) {
  MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)a->comm);
  int size = 1;
  if (p->active) {
    snprintf(err, (size_t)n, "%s: started twice without finishing (internal error)", a->label);
    return 1;
  }
  a->counts[GF_ALLREDUCE_CALLS] += 1;
  a->counts[GF_ALLREDUCE_BYTES] += a->count * a->elem_bytes;
  a->counts[GF_NATIVE_CALLS] += 1;
  copy_in(a);
  MPI_Comm_size(comm, &size);
  if (size > 1 && a->count) {
    int rc = MPI_Iallreduce(MPI_IN_PLACE, a->dst, (int)a->count, float_type(a), MPI_SUM, comm, &p->request);
    if (rc != MPI_SUCCESS) return failed(rc, a, "MPI_Iallreduce", err, n);
    p->active = 1;
  }
  return 0;
}

/* Wait for `summed` (started by start()) and write summed / size to out. */
static int finish(const gf_mpi_args* a, gf_mpi_pending* p, const void* summed, void* out, char* err, int n) {
  int size = 1;
  MPI_Comm_size(MPI_Comm_f2c((MPI_Fint)a->comm), &size);
  if (p->active) {
    p->active = 0;
    if (wait_bounded(&p->request, a, err, n)) return 1;
  }
  if (a->elem_bytes == 8) {
    const double* s = (const double*)summed;
    double* o = (double*)out;
    for (long long i = 0; i < a->count; i++) o[i] = s[i] / (double)size;
  } else {
    const float* s = (const float*)summed;
    float* o = (float*)out;
    for (long long i = 0; i < a->count; i++) o[i] = s[i] / (float)size;
  }
  return 0;
}

/* AllReduceStart: dst = src, then start summing dst over ranks in place. */
int gf_mpi_allreduce_start(void* block, char* err, int n) {
  gf_mpi_args* a = (gf_mpi_args*)block;
  return start(a, a->pending, err, n);
}

/* AllReduceWait: src is the start's buffer; dst = its sum over ranks / size. */
int gf_mpi_allreduce_wait(void* block, char* err, int n) {
  gf_mpi_args* a = (gf_mpi_args*)block;
  a->counts[GF_NATIVE_CALLS] += 1;
  return finish(a, a->pending, a->src, a->dst, err, n);
}

/* AllReduce: dst = the mean over ranks of src. */
int gf_mpi_allreduce(void* block, char* err, int n) {
  gf_mpi_args* a = (gf_mpi_args*)block;
  gf_mpi_pending own = {MPI_REQUEST_NULL, 0};
  return start(a, &own, err, n) || finish(a, &own, a->dst, a->dst, err, n);
}

/* Broadcast: dst = root's src on every rank (bytes, any dtype). */
int gf_mpi_broadcast(void* block, char* err, int n) {
  gf_mpi_args* a = (gf_mpi_args*)block;
  MPI_Comm comm = MPI_Comm_f2c((MPI_Fint)a->comm);
  MPI_Request request;
  int size = 1;
  long long bytes = a->count * a->elem_bytes;
  a->counts[GF_BROADCAST_CALLS] += 1;
  a->counts[GF_BROADCAST_BYTES] += bytes;
  a->counts[GF_NATIVE_CALLS] += 1;
  copy_in(a);
  MPI_Comm_size(comm, &size);
  if (size == 1 || bytes == 0) return 0;
  int rc = MPI_Ibcast(a->dst, (int)bytes, MPI_BYTE, (int)a->root, comm, &request);
  if (rc != MPI_SUCCESS) return failed(rc, a, "MPI_Ibcast", err, n);
  return wait_bounded(&request, a, err, n);
}
