"""The kernel's TCP memory (sockstat) and slab, machine-wide."""

import os


def kernel_tcp_bytes():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                w = line.split()
                return int(w[w.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    return 0


def slab_bytes():
    """Slab of /proc/meminfo: where the kernel keeps socket structures
    (machine-wide; other work on the machine moves it too)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1]) * 1024
    return 0
