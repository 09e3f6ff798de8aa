"""Real-kernel target: a Debian (or any) kernel under QEMU, the tsm_test module, the suite inside.

Nothing here touches the host's /boot or installs a kernel: packages are fetched with
``apt-get download`` and unpacked with ``dpkg -x`` into a cache directory; the guest sees the host
root read-only over 9p and writes its results to one shared directory (docs/real-kernels.md, Environment and recipes).
"""
