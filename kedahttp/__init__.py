"""kedahttp: HTTP scale-to-zero for Kubernetes, driven by KEDA's external-push scaler interface."""

__version__ = "0.1.0"
