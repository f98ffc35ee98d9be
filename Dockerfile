# Build: a static binary, no cgo (the SQLite driver is pure Go).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/retention-operator . && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/retention-outreach ./cmd/retention-outreach

# Run: distroless static, non-root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/retention-operator /retention-operator
# The outreach Jobs' entrypoint (the operator's Jobs set it as command).
COPY --from=build /out/retention-outreach /retention-outreach
USER 65532:65532
ENTRYPOINT ["/retention-operator"]
CMD ["manager"]
