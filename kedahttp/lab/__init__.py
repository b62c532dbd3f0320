"""kedahttp lab: trace replay in simulated time against the real counters, scaler state and KEDA/HPA rules."""
