#!/usr/bin/env bash
# Packages the fan-out Lambda as the `provided.al2023` runtime (and the CloudFormation template's
# LambdaCodeS3Bucket/LambdaCodeS3Key) expects it: a zip with the executable `bootstrap` at its root.
#
#   lambda/package.sh                 # host target → target/lambda/secret-bridge-lambda.zip
#   TARGET=aarch64-unknown-linux-gnu lambda/package.sh
#                                     # another target → target/lambda/secret-bridge-lambda-<TARGET>.zip;
#                                     # needs that Rust target and its linker
#                                     # (see lambda/README.md, "Packaging", for arm64)
#
# Environment: TARGET (a Rust target triple; default: the host), STRIP (the strip program for
# TARGET; default `strip` for the host, none for other targets), OUT (the zip to write).
#
# The script reads the ELF header of the built binary and prints the template's matching
# LambdaArchitecture (x86_64 or arm64); it fails if the binary is for neither.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

build=(cargo build --release --locked -p secret-bridge-lambda)
binary=target/release/secret-bridge-lambda
strip_tool=${STRIP:-strip}
out=${OUT:-$root/target/lambda/secret-bridge-lambda.zip}
if [[ -n "${TARGET:-}" ]]; then
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
    echo "package.sh: the Rust target $TARGET is not installed: rustup target add $TARGET" >&2
    exit 1
  fi
  build+=(--target "$TARGET")
  binary=target/$TARGET/release/secret-bridge-lambda
  strip_tool=${STRIP:-}
  out=${OUT:-$root/target/lambda/secret-bridge-lambda-$TARGET.zip}
fi

echo "==> ${build[*]}"
"${build[@]}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$binary" "$stage/bootstrap"
chmod 0755 "$stage/bootstrap"
if [[ -n "$strip_tool" ]] && command -v "$strip_tool" >/dev/null; then
  echo "==> $strip_tool bootstrap"
  "$strip_tool" "$stage/bootstrap"
fi

# ELF e_machine (2 bytes, little endian, at offset 18): 62 is x86-64, 183 is AArch64.
case $(od -An -tu2 -j18 -N2 "$stage/bootstrap" | tr -d ' ') in
  62) architecture=x86_64 ;;
  183) architecture=arm64 ;;
  *) echo "package.sh: bootstrap is neither an x86-64 nor an arm64 ELF executable" >&2; exit 1 ;;
esac

mkdir -p "$(dirname "$out")"
rm -f "$out"
if command -v zip >/dev/null; then
  (cd "$stage" && zip -q -X "$out" bootstrap)
else
  # No `zip`: Python's zipfile, keeping bootstrap executable (mode 0755 in the external attributes).
  python3 - "$stage/bootstrap" "$out" <<'PY'
import sys, zipfile
source, target = sys.argv[1], sys.argv[2]
info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
info.external_attr = (0o100755 & 0xFFFF) << 16
info.create_system = 3  # Unix, so the mode is honoured
info.compress_type = zipfile.ZIP_DEFLATED
with open(source, "rb") as f, zipfile.ZipFile(target, "w") as z:
    z.writestr(info, f.read(), compresslevel=9)
PY
fi

echo "==> ${out#"$root"/}: bootstrap $(stat -c %s "$stage/bootstrap") bytes, zip $(stat -c %s "$out") bytes"
echo "    built for LambdaArchitecture=$architecture"
echo "    upload it, e.g. aws s3 cp ${out#"$root"/} s3://BUCKET/secret-bridge-lambda-$(git rev-parse --short HEAD 2>/dev/null || echo dev).zip"
