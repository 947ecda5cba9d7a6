/* A pool worker process: runs the initializer, then takes chunks from the
 * queue until the pool closes, it has run maxtasksperchild tasks, or it is
 * killed.
 *
 * Per item the worker writes only its own slot (the item it runs, and
 * `busy`, odd while a task runs) and the item's result, so that a map of
 * trivial tasks costs a few stores per item. `busy` is what the pool
 * thread samples for task_timeout: no clock is read here. */
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "pool/shared.h"

/* Exit status of a worker that cannot run at all (no owner slot, or the
 * initializer is not found in this program): it dies before it is ready,
 * which breaks the pool. */
#define WORKER_CANNOT_RUN 70

/* How long an idle worker spins before it sleeps (ns). */
#define IDLE_SPIN_NS 50000

typedef struct worker {
  mp__pool_shared_t *ps;
  mp__pool_slot_t *slot;
  int32_t index;
  uint64_t busy;
  void *initarg;           /* the initializer's copy, kept for its life */
  void *fns[MP__POOL_FNS]; /* the task functions, decoded on first use */
} worker_t;

/* One worker per process: its state is static, not on its stack. */
static worker_t self;

static void *task_fn(worker_t *w, uint32_t index) {
  if (index >= MP__POOL_FNS)
    return NULL;
  if (!w->fns[index])
    w->fns[index] = mp__fn_decode(&w->ps->fns[index]);
  return w->fns[index];
}

static void start_item(worker_t *w, uint64_t index) {
  atomic_store_explicit(&w->slot->current, index, memory_order_relaxed);
  atomic_store_explicit(&w->slot->busy, ++w->busy, memory_order_release);
}

/* Records item k's result. */
static void end_item(worker_t *w, mp__pool_job_t *job, uint64_t k,
                     int32_t state, int32_t task_code) {
  mp__pool_item_set(job, k, state, task_code);
  atomic_store_explicit(&w->slot->busy, ++w->busy, memory_order_release);
}

/* ---- the task's output, behind a guard page ---------------------------------
 * A task writes its output into the worker's own memory, never straight
 * into the job: `room` bytes that end exactly where an inaccessible page
 * begins. A task that writes past what it was given (ignoring out_cap, or
 * a map function writing more than out_size) dies on the guard page, and
 * the task gets MP_EWORKER; the parent's memory and the arena are never
 * written by it. The worker then copies exactly the result into the job.
 * The window is address space only (MAP_NORESERVE): pages cost memory
 * once a task touches them, and large ones are given back after the task. */

#define GUARD_PAGE 4096u

static struct {
  char *base;  /* size bytes, then the guard page */
  size_t size; /* a multiple of the page */
} window;

/* room bytes of writable memory followed by the guard page, or NULL. */
static char *guarded(size_t room) {
  if (__builtin_expect(room > window.size || !window.base, 0)) {
    if (window.base)
      munmap(window.base, window.size + GUARD_PAGE);
    size_t size = (room + GUARD_PAGE - 1) & ~(size_t)(GUARD_PAGE - 1);
    void *p = mmap(NULL, size + GUARD_PAGE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED || mprotect((char *)p + size, GUARD_PAGE, PROT_NONE)) {
      if (p != MAP_FAILED)
        munmap(p, size + GUARD_PAGE);
      window.base = NULL;
      window.size = 0;
      return NULL;
    }
    window.base = p;
    window.size = size;
  }
  return window.base + window.size - room;
}

/* A fault on the guard page ends the worker at once with its own status
 * (a sanitizer's handler of a deadly signal may hang in a dying worker);
 * any other fault goes on to the default action. */
#define WORKER_OVERRAN 75

static struct sigaction before_guard; /* the handler we stand in front of */

static void guard_hit(int sig, siginfo_t *info, void *context) {
  (void)context;
  char *at = info->si_addr;
  if (window.base && at >= window.base + window.size &&
      at < window.base + window.size + GUARD_PAGE)
    syscall(SYS_exit_group, WORKER_OVERRAN); /* no exit handler runs */
  /* Not ours: the faulting access runs again with the handler that was
   * there before (the default action, or the program's own). */
  sigaction(sig, &before_guard, NULL);
}

static void watch_guard(void) {
  struct sigaction sa = {.sa_sigaction = guard_hit, .sa_flags = SA_SIGINFO};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &before_guard);
}

/* After a task that used much of the window: its pages go back. */
static void window_release(size_t used) {
  if (used > (1u << 20))
    madvise(window.base, window.size, MADV_DONTNEED);
}

/* An item's bytes: the common small sizes without a call. */
static inline void copy_item(void *to, const void *from, size_t size) {
  switch (size) {
  case 0:
    break;
  case 4:
    memcpy(to, from, 4);
    break;
  case 8:
    memcpy(to, from, 8);
    break;
  case 16:
    memcpy(to, from, 16);
    break;
  default:
    memcpy(to, from, size);
  }
}

static void run_map(worker_t *w, mp__pool_job_t *job, uint64_t first,
                    uint64_t n) {
  mp_pool_map_fn fn = (mp_pool_map_fn)task_fn(w, job->fn);
  size_t in_size = job->in_size, out_size = job->out_size;
  char *room = guarded(out_size); /* the same for every item */
  for (uint64_t i = first; i < first + n; i++) {
    start_item(w, i);
    /* No pointer arithmetic on NULL when an item has no bytes. */
    const char *in = in_size ? job->in + i * in_size : job->in;
    char *out = out_size ? job->out + i * out_size : job->out;
    if (!fn || !room) {
      end_item(w, job, i, fn ? -ENOMEM : MP_EINVAL, 0);
      continue;
    }
    /* The task sees what the job's output held (the caller's array may
     * be the job's), and its bytes go back once it returned. */
    copy_item(room, out, out_size);
    int rc = fn(in, room);
    copy_item(out, room, out_size);
    end_item(w, job, i, rc ? MP_ETASK : MP__ITEM_OK, rc);
  }
  window_release(out_size);
}

static void run_apply(worker_t *w, mp__pool_job_t *job) {
  mp_pool_task_fn fn = (mp_pool_task_fn)task_fn(w, job->fn);
  start_item(w, 0);
  if (!fn) {
    end_item(w, job, 0, MP_EINVAL, 0);
    return;
  }
  size_t len = 0, cap = job->any_size ? MP_POOL_RESULT_MAX : job->out_size;
  char *room = guarded(cap);
  if (!room && job->any_size) {
    /* A system that counts address space as memory (strict overcommit):
     * the room the job itself has; a larger result is MP_EOVERFLOW. */
    cap = job->out_size;
    room = guarded(cap);
  }
  if (!room) {
    end_item(w, job, 0, -ENOMEM, 0);
    return;
  }
  int rc = fn(job->in, job->in_size, room, cap, &len);
  atomic_store(&job->out_len, len);
  int32_t state = rc ? MP_ETASK : MP__ITEM_OK;
  /* A task that needs more room says how much in *out_len. */
  if (rc == 0 && len > cap)
    state = MP_EOVERFLOW;
  if (state == MP__ITEM_OK && len > job->out_size) {
    /* A large result of apply_async: a block of its own, which the
     * parent frees with the job. */
    char *big = mp__shm_alloc(len);
    if (big) {
      memcpy(big, room, len);
      atomic_store(&job->big_out, big);
    } else {
      state = -ENOMEM;
    }
  } else if (state == MP__ITEM_OK && len) {
    memcpy(job->out, room, len);
  }
  window_release(len);
  end_item(w, job, 0, state, rc);
}

/* Runs the slot's claim; its items then count in the ledger (one store
 * ends the claim). */
static void run_claim(worker_t *w) {
  mp__pool_slot_t *slot = w->slot;
  mp__pool_job_t *job = atomic_load_explicit(&slot->job, memory_order_relaxed);
  uint64_t n = atomic_load_explicit(&slot->n, memory_order_relaxed);
  if (job->kind == MP__JOB_APPLY)
    run_apply(w, job);
  else
    run_map(w, job, atomic_load_explicit(&slot->first, memory_order_relaxed),
            n);
  uint64_t ran = atomic_load_explicit(&slot->ledger, memory_order_relaxed) /
                 MP__LEDGER_RAN;
  atomic_store_explicit(&slot->ledger, mp__ledger(MP__PHASE_IDLE, ran + n),
                        memory_order_release);
}

/* The worker's bit in the pool's spinner mask (none past 64 slots). */
static uint64_t spinner_bit(const worker_t *w) {
  return w->index < 64 ? (uint64_t)1 << w->index : 0;
}

/* Waits until there may be work for us. Returns true when it saw work
 * while it spun: it then goes to the queue with its spinner bit still
 * set.
 *
 * After a single task (`spin`) it spins a while on work_seq, its spinner
 * bit set since before its turn at the queue: a caller submitting task
 * after task (apply_async and get in a loop) then finds the worker awake,
 * takes the bit off and wakes no other. Not after a larger chunk: the
 * parent then has outputs to copy, and the spin would only take its CPU.
 * The bit stays set when the spin sees work: taken off by the worker
 * instead, it could be gone before the submitter looks for it (work_seq
 * moves under the queue lock, the bit is taken after), which then wakes
 * another worker for the same task.
 *
 * Then it sleeps until a submitter that finds no spinner wakes it (or
 * the pool closes). It sleeps on the current value of work_seq, not on
 * the value of its turn (`seq`): work that came since its turn and that
 * another worker took already (the queue is empty again) is no reason to
 * wake. On the value of its turn, the other worker of a caller submitting
 * task after task would find work_seq moved at every task, its
 * futex_wait failing at once, and race for the queue lock for nothing:
 * two workers awake on top of the caller, three spinners on two cores.
 * It announces itself sleeping before it looks: a submitter either sees
 * it sleeping and wakes it, or moved work_seq before the worker read it,
 * and then linked its unit before that too, which the worker sees at the
 * head. */
static bool wait_for_work(worker_t *w, uint32_t seq, bool spin) {
  mp__pool_shared_t *ps = w->ps;
  if (spin && mp__futex_spin_for(&ps->work_seq, seq, IDLE_SPIN_NS))
    return true;
  atomic_fetch_and(&ps->spinners, ~spinner_bit(w));
  atomic_store(&w->slot->sleeping, 1);
  for (;;) {
    uint32_t now = atomic_load(&ps->work_seq);
    if ((now != seq && atomic_load(&ps->head)) ||
        atomic_load(&ps->state) != MP__POOL_RUNNING)
      break;
    mp__futex_wait(&ps->work_seq, now, MP__NO_DEADLINE);
  }
  atomic_store(&w->slot->sleeping, 0);
  return false;
}

/* Whether the worker may claim its next chunk of a unit of job without
 * the lock: a map that needs no commit per chunk (imap's do). */
static bool unlocked_job(const mp__pool_job_t *job) {
  return job->kind == MP__JOB_MAP &&
         !(atomic_load_explicit(&job->flags, memory_order_relaxed) &
           MP__JOB_EACH);
}

/* ... and whether it may now: while the pool runs and it has tasks left. */
static bool unlocked_now(const worker_t *w, uint64_t tasks) {
  const mp__pool_shared_t *ps = w->ps;
  return !(ps->maxtasks && tasks >= ps->maxtasks) &&
         atomic_load_explicit(&ps->state, memory_order_relaxed) !=
             MP__POOL_TERMINATING;
}

/* The worker's turns under the lock: add what it ran to the job, claim a
 * chunk, or sleep, or stop. Between two turns it runs the chunks of one
 * unit, claimed without the lock. */
static void work(worker_t *w) {
  mp__pool_shared_t *ps = w->ps;
  mp__pool_slot_t *slot = w->slot;
  uint64_t tasks = 0;
  /* spin: after a single task, or a spin that saw work; seen by a
   * submitter from now on as a worker that will look at the queue (this
   * turn, or its spin after it). After a spin that saw work (`looked`),
   * an empty queue means another worker took it: this one sleeps, so that
   * two workers do not race for every task. */
  bool spin = false, looked = false;
  for (;;) {
    if (spin)
      atomic_fetch_or(&ps->spinners, spinner_bit(w));
    if (mp__pool_lock(ps, w->index) < 0)
      return;
    bool wake = false, notify = false;
    mp__pool_job_t *ran = atomic_load(&slot->job);
    if (mp__pool_flush(ps, slot, &wake))
      notify = atomic_load(&ran->flags) & MP__JOB_NOTIFY;
    uint32_t state = atomic_load(&ps->state);
    bool stop = (ps->maxtasks && tasks >= ps->maxtasks) ||
                state == MP__POOL_TERMINATING;
    bool claimed = !stop && mp__pool_claim(ps, slot);
    if (!claimed && state == MP__POOL_CLOSING)
      stop = true;
    uint32_t seq = atomic_load(&ps->work_seq);
    mp__pool_unlock(ps);
    /* `ran` may be freed by now if it completed: a wake-up of a reused
     * address is only a spurious one, which every waiter re-checks. */
    if (wake)
      mp__pool_wake_job(ran);
    if (notify)
      mp__pool_notify(ps);
    if (stop)
      return;
    if (!claimed) {
      spin = looked = wait_for_work(w, seq, spin && !looked);
      continue;
    }
    if (spin)
      atomic_fetch_and(&ps->spinners, ~spinner_bit(w));
    mp__pool_unit_t *unit = atomic_load(&slot->unit);
    bool unlocked = unlocked_job(unit->job);
    uint64_t n;
    do {
      n = atomic_load_explicit(&slot->n, memory_order_relaxed);
      run_claim(w);
      tasks++;
    } while (unlocked && unlocked_now(w, tasks) &&
             mp__pool_claim_from(ps, slot, unit));
    spin = n == 1;
    looked = false;
  }
}

static void run_initializer(worker_t *w) {
  const mp__pool_shared_t *ps = w->ps;
  if (!ps->initializer.valid)
    return;
  void (*init)(void *) = (void (*)(void *))mp__fn_decode(&ps->initializer);
  if (!init)
    exit(WORKER_CANNOT_RUN);
  /* A private copy: the initializer may keep or change it. */
  if (ps->initarg_size) {
    w->initarg = malloc(ps->initarg_size);
    if (!w->initarg)
      exit(WORKER_CANNOT_RUN);
    memcpy(w->initarg, ps->initarg, ps->initarg_size);
  }
  init(w->initarg);
}

static void worker_main(mp_process_t *process) {
  const mp__pool_worker_arg_t *arg = mp_process_data(process);
  worker_t *w = &self;
  w->ps = arg->ps;
  w->index = (int32_t)arg->slot;
  w->slot = &w->ps->slots[arg->slot];
  /* The pool thread that started us blocks every signal. */
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, NULL);
  mp__owner_t token;
  if (mp__owner_self(&token) < 0)
    exit(WORKER_CANNOT_RUN);
  atomic_store(&w->slot->owner, token);
  run_initializer(w);
  watch_guard();
  atomic_store(&w->slot->state, MP__SLOT_READY);
  work(w);
}

const mp_process_type_t mp__pool_worker_types[MP__METHOD_COUNT] = {
    [MP__METHOD_FORK] = {"ForkPoolWorker", worker_main,
                         sizeof(mp__pool_worker_arg_t)},
    [MP__METHOD_SPAWN] = {"SpawnPoolWorker", worker_main,
                          sizeof(mp__pool_worker_arg_t)},
    [MP__METHOD_FORKSERVER] = {"ForkServerPoolWorker", worker_main,
                               sizeof(mp__pool_worker_arg_t)},
};
