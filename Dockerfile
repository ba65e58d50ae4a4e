# syntax=docker/dockerfile:1
# Multi-stage build: a static pullgate binary on a minimal, non-root base.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/pullgate ./cmd/pullgate
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/pullgate-signal-vuln ./cmd/pullgate-signal-vuln

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pullgate /usr/local/bin/pullgate
# The reference vulnerability signal provider (docs/signals-vuln.md).
COPY --from=build /out/pullgate-signal-vuln /usr/local/bin/pullgate-signal-vuln
USER 65532:65532
EXPOSE 5000 9090
VOLUME ["/var/lib/pullgate"]
ENTRYPOINT ["/usr/local/bin/pullgate"]
CMD ["serve", "--config", "/etc/pullgate/pullgate.yaml"]
