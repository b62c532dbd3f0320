# syntax=docker/dockerfile:1
# The kedahttp image: one image, two commands (`kedahttp proxy`, `kedahttp scaler`).
#   docker build -t ghcr.io/kedahttp/kedahttp:0.1.0 .
# Stage 1 installs kedahttp and its dependencies into a virtualenv; stage 2 copies only that venv onto a
# clean base, so no build tool, cache or source tree ships. Every dependency has wheels for CPython 3.11
# on amd64 and arm64; the build stage has gcc because the proxy's data path is compiled with mypyc
# (setup.py), and the runtime stage needs no compiler.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/kedahttp
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY kedahttp ./kedahttp
RUN /opt/kedahttp/bin/pip install . \
 && cd / && /opt/kedahttp/bin/python -c "from kedahttp.proxy import compiled; assert compiled.data_path() == 'compiled'"

FROM python:3.11-slim
COPY --from=build /opt/kedahttp /opt/kedahttp
# Bytecode was compiled at install time and the root filesystem is read-only in the cluster: write none.
ENV PATH=/opt/kedahttp/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Numeric, so Kubernetes can check runAsNonRoot without a passwd entry; the manifests use the same id.
USER 65532:65532
# proxy: data 8080, admin 8081, metrics 9102; scaler: gRPC 9090, metrics 9103
EXPOSE 8080 8081 9090 9102 9103
ENTRYPOINT ["kedahttp"]
CMD ["--help"]
