"""`kedahttp dev`: the whole scale-to-zero loop on one machine: local runtime, KEDA emulator, live view."""
