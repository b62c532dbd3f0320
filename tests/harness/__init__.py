"""Everything the tests share, and the only place under tests/ a test may import from (test_imports.py
checks it). Fixtures stay in conftests; what they build lives here.

- servers.py: redis-server and nats-server on free ports; free_port, wait_port
- waiting.py: ``until``, the one polling helper
- proxy.py: settings on free ports, ``RunningProxy``, ``start_proxy`` and friends; its metrics and wakes
- upstreams.py, recorder.py, faulty_upstream.py: the fake upstreams (well-behaved, misbehaving on
  purpose, recording with a strict reader, scriptable faults)
- slow_upstream.py: an upstream that hangs, stalls mid-body, drips a steady stream or idles a WebSocket
- browser.py: a real headless Chromium (Debian's) driven over the DevTools protocol
- clients.py, wire.py: raw HTTP clients and a strict RFC 9112 reader; fault_clients.py: clients that
  count every request, a KEDA-like gRPC client, a bus tap
- procs.py: kedahttp proxy and scaler as subprocesses
- scaler.py, fake_scaler.py: the real scaler in-process with KEDA-like clients; a fake one for the emulator
- fake_apiserver.py, admin.py, kube_objects.py, schemas.py: the Kubernetes API faked over HTTP, the admin
  API on it, Services and EndpointSlices, KEDA's CRD schema
- static_source.py, activity_reports.py: a route source and exact activity reports, as plain data
- render.py, api_calls.py: the manifests rendered with kubectl kustomize; the API calls the code makes
"""
