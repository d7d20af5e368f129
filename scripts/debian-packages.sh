#!/bin/sh
# Install the Debian packages the lab needs, if any is missing.
#   liburing-dev      io_uring from C (2.3 on Debian 12; native/compat_uring.h fills newer bits)
#   python3-bpfcc     bcc, Debian's build: the PyPI package named "bcc" is unrelated
#   bpfcc-tools       bcc's tools (and its libbcc)
#   linux-headers-*   bcc's stand-in kernel headers (see lab/probes)
#   bpftool           lists loaded BPF programs: the probe tests check none is left behind
#   rt-tests          cyclictest, the reference for timer-upcall lateness
#   linux-perf        perf bench sched pipe, the reference for the pipe round trip
#   poppler-utils     pdftotext / pdftoppm: tests read the PDF report
#   clang-format      `make lint`: the C sources in the kernel's style
# Usage: scripts/debian-packages.sh [--check]
set -eu

arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
packages="build-essential python3-dev python3-venv liburing-dev python3-bpfcc bpfcc-tools
linux-headers-$arch bpftool rt-tests linux-perf poppler-utils clang-format"

missing=""
for p in $packages; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -z "$missing" ]; then
	exit 0
fi
if [ "${1:-}" = "--check" ]; then
	echo "missing Debian packages:$missing" >&2
	exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "missing Debian packages:$missing" >&2
	echo "install them as root: sudo apt-get install -y$missing" >&2
	exit 1
fi
echo "installing Debian packages:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
