#!/bin/sh
# porch's example task: reports whether a package is installed, and its version.
# Parameters arrive as PT_* environment variables (input_method "environment").
set -u
if [ "$PT_action" != "status" ]; then
  printf '{"_error": {"kind": "package/unsupported-action", "msg": "only status is supported, not %s"}}\n' "$PT_action"
  exit 1
fi
version=""
if command -v dpkg-query >/dev/null 2>&1; then
  version=$(dpkg-query -W -f='${Version}' "$PT_name" 2>/dev/null) || version=""
elif command -v rpm >/dev/null 2>&1; then
  version=$(rpm -q --qf '%{VERSION}-%{RELEASE}' "$PT_name" 2>/dev/null) || version=""
fi
if [ -n "$version" ]; then status=installed; else status=absent; fi
printf '{"name": "%s", "status": "%s", "version": "%s"}\n' "$PT_name" "$status" "$version"
