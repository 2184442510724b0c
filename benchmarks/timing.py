"""Timing shared by the benchmark scripts."""
import statistics
import time


def median_seconds(fn, repeats):
    """Median wall time of `repeats` calls of fn(), after one untimed call (tracing, warm-up)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def alternating_medians(fns, rounds):
    """{name: (median wall seconds, median process CPU seconds)} of the functions in `fns`
    ({name: fn}), each called once untimed, then once per round, in turn within every round, so
    that load from other processes and thermal drift fall on all of them alike."""
    for fn in fns.values():
        fn()
    wall = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in fns}
