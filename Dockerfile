# meshpki as a static image FROM scratch (docs/PACKAGING.md).
#
# The binary is built first, outside the image, so that building the image
# pulls nothing: scratch is not a registry image.
#
#   sh deploy/image/prepare.sh        # the static binary and the CA bundle
#   docker build -t meshpki .         # or: buildah bud -t meshpki .
#   docker run --rm meshpki --version
#
# CGO_ENABLED=0 leaves PKCS#11 out (it needs cgo); file keys and AWS KMS work.
FROM scratch
COPY deploy/image/meshpki /meshpki
# Roots for what the server reaches outside its own PKI (Slack and webhook
# alerts, scans of public endpoints); scratch has none.
COPY deploy/image/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Writable by the non-root user the chart runs it as; mount a volume here.
COPY --chown=65532:65532 deploy/image/empty/ /var/lib/meshpki/
USER 65532:65532
EXPOSE 8443
VOLUME ["/var/lib/meshpki"]
ENTRYPOINT ["/meshpki"]
CMD ["server", "--data", "/var/lib/meshpki", "--listen", "0.0.0.0:8443"]
