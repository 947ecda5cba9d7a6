"""The twin of bench_mpi.c in mpi4py.futures: run by bench_mpi under
`mpirun -np R python3 -m mpi4py.futures bench_mpi.py` (rank 0 runs this,
the other ranks are the executor's workers). Prints the rows' Python
column ("py\t<operation>\t<ns>")."""
import statistics
import time

from mpi4py import MPI
from mpi4py.futures import MPIPoolExecutor

N = 1_000_000
REPS = 3


def square(x):
    return x * x


def main():
    ranks = MPI.COMM_WORLD.Get_size()
    with MPIPoolExecutor() as ex:
        workers = max(1, ranks - 1)
        chunk = max(1, N // (4 * workers))  # multiprocessing.Pool's choice
        times = []
        for _ in range(REPS):
            t0 = time.perf_counter_ns()
            out = list(ex.map(square, range(N), chunksize=chunk))
            times.append(time.perf_counter_ns() - t0)
            assert out[-1] == (N - 1) ** 2
    plural = "s" if ranks > 1 else ""
    print(f"py\tmpi map 1M x->x*x, {ranks} rank{plural} (whole map)\t"
          f"{statistics.median(times):.1f}", flush=True)


if __name__ == "__main__":
    main()
