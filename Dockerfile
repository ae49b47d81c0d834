# auditns container image. Build:
#   docker build -t auditns:dev --build-arg COMMIT=$(git rev-parse HEAD) \
#     --build-arg VERSION=$(git describe --tags --always --dirty) .
# (.git is not in the build context, so the build's identity comes in as
# arguments; `auditns version` prints it.)
# Run it with the host's pid, network and cgroup namespaces and the
# capabilities listed in docker-compose.yml (explained in README.md,
# "Privileges"); without them it cannot reach the kernel audit subsystem.

# ---- build ------------------------------------------------------------------
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev COMMIT= DATE=
RUN go build -ldflags="-s -w \
      -X github.com/auditns/auditns/internal/buildinfo.version=${VERSION} \
      -X github.com/auditns/auditns/internal/buildinfo.commit=${COMMIT} \
      -X github.com/auditns/auditns/internal/buildinfo.date=${DATE}" \
    -o /out/auditns ./cmd/auditns

# ---- runtime ----------------------------------------------------------------
# Static binary on distroless: CA certificates (Kafka TLS) and tzdata, no shell.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/auditns /usr/local/bin/auditns
# Root inside the container: the capabilities granted with cap_add are
# effective only for uid 0.
USER 0:0
VOLUME ["/var/lib/auditns", "/var/spool/auditns"]
ENTRYPOINT ["/usr/local/bin/auditns", "run"]
