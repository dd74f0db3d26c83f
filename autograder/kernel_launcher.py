"""Start a grading kernel: resource limits first, then ipykernel.

The grading kernelspec runs `python kernel_launcher.py -f {connection_file}`. This
script lowers the limits of its own process and replaces itself with ipykernel,
so the limits hold for everything the student's code does:

* RLIMIT_DATA (heap and anonymous memory, not the shared libraries that make
  torch's virtual size several GiB): an allocation beyond it raises MemoryError
  or torch's "can't allocate memory" in the cell, and the kernel survives.
* RLIMIT_FSIZE: no file larger than the limit (runaway writes).
* RLIMIT_CORE 0: a crashing kernel leaves no core dump.

It runs as a plain script (no imports from the repository), configured by the
environment that the grader's execute preprocessor gives each kernel.
"""
import os
import resource
import sys

MIB = 1024 * 1024


def _limit(which: int, value: int) -> None:
    soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, hard if hard != resource.RLIM_INFINITY else value))


def main() -> None:
    memory = int(os.environ.get("VAEKIT_GRADER_MEMORY_MB", "0") or 0)
    if memory > 0:
        _limit(resource.RLIMIT_DATA, memory * MIB)
    file_size = int(os.environ.get("VAEKIT_GRADER_FILE_MB", "0") or 0)
    if file_size > 0:
        _limit(resource.RLIMIT_FSIZE, file_size * MIB)
    _limit(resource.RLIMIT_CORE, 0)
    args = [sys.executable, "-Xfrozen_modules=off", "-m", "ipykernel_launcher", *sys.argv[1:]]
    os.execv(sys.executable, args)


if __name__ == "__main__":
    main()
