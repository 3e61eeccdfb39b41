#!/bin/sh
# The rolling-upgrade test (tests/tests/upgrade.rs) against an older porch build.
#
#   tests/upgrade.sh [COMMIT]     (default: the previous release's format: the last commit
#                                  before the one that set the current format version)
#
# Builds COMMIT's `porch` once from a temporary git worktree and caches the binary in
# target/upgrade-old/<commit>/porch (later runs reuse it). The build shares this tree's
# target dir, so dependencies compiled for this tree are reused (only porch's own crates are
# built again); it leaves COMMIT's binary at target/debug/porch, so main.rs is touched and
# this tree's binaries are rebuilt before the test runs with PORCH_OLD_BIN set.
set -eu
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
format_set=$(git -C "$repo" log --format=%H -1 -G'^pub const FORMAT_VERSION: u16' -- core/src/format_version.rs raft/src/envelope.rs)
if [ "$(git -C "$repo" rev-parse --is-shallow-repository)" = true ]; then
    git -C "$repo" fetch --unshallow --quiet
fi
commit=$(git -C "$repo" rev-parse --verify --quiet "${1:-$format_set^}^{commit}") || {
    echo "tests/upgrade.sh: no commit ${1:-$format_set^} in this clone's history" >&2
    exit 1
}
cache="$repo/target/upgrade-old/$commit"
if [ ! -x "$cache/porch" ]; then
    src="$repo/target/upgrade-old/src-$commit"
    rm -rf "$src"
    git -C "$repo" worktree add --detach "$src" "$commit"
    cargo build --manifest-path "$src/Cargo.toml" -p porch-cli --bin porch --target-dir "$repo/target"
    mkdir -p "$cache"
    cp "$repo/target/debug/porch" "$cache/porch"
    git -C "$repo" worktree remove --force "$src"
    touch "$repo/cli/src/main.rs"
fi
cd "$repo"
cargo build --workspace --bins
PORCH_OLD_BIN="$cache/porch" cargo test -p porch-tests --test upgrade -- --ignored --nocapture
