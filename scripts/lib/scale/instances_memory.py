"""The kernel's TCP memory (sockstat), machine-wide."""

import os


def kernel_tcp_bytes():
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                w = line.split()
                return int(w[w.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    return 0
