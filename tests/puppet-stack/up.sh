#!/usr/bin/env bash
# A real Puppet stack on this one machine, for porch's end-to-end tests and labs:
# PostgreSQL -> PuppetDB, Puppet Server with its CA, and agent identities signed by that CA.
#
#   up.sh [up]              install what is missing, start everything, wait until it answers
#   up.sh agents N [PREFIX] N agent identities PREFIX1..PREFIXN (default prefix "agent")
#   up.sh certs NAME...     one signed identity per NAME for porch nodes and clients: like an
#                           agent's, plus the alternative names localhost and 127.0.0.1 (a node
#                           on loopback serves agents and clients that dial https://127.0.0.1)
#   up.sh status            what answers, where things are
#   up.sh down              stop the Puppet Server and PuppetDB this script started, and PostgreSQL
#
# Idempotent: what already runs or exists is kept. Runs as root. Everything it learns is written
# to $PORCH_STACK_DIR/env (default /var/lib/porch-stack/env), a shell-sourceable file that tests
# read to find the stack (PUPPETDB_URL, PUPPET_CA_CERT, PORCH_STACK_AGENTS_DIR, ...).
#
# Settings (environment):
#   PORCH_STACK_DIR          state, logs, pid files and agent identities   (/var/lib/porch-stack)
#   PORCH_STACK_SERVER       the Puppet Server's certname and hostname      ($(hostname -f))
#   PORCH_STACK_WAIT_SECS    how long each JVM may take to answer           (240)
#   PUPPETSERVER_JAVA_ARGS   heap and JIT for Puppet Server   (-Xms256m -Xmx768m -XX:TieredStopAtLevel=1)
#   PUPPETDB_JAVA_ARGS       heap and JIT for PuppetDB        (-Xmx256m -XX:TieredStopAtLevel=1)
set -euo pipefail

STACK_DIR=${PORCH_STACK_DIR:-/var/lib/porch-stack}
SERVER=${PORCH_STACK_SERVER:-$(hostname -f 2>/dev/null || hostname)}
SERVER=${SERVER,,}
WAIT_SECS=${PORCH_STACK_WAIT_SECS:-240}
# C1-only JIT: the JVMs start markedly faster on two shared cores, and a test stack never runs
# long enough for C2 to pay off.
PUPPETSERVER_JAVA_ARGS=${PUPPETSERVER_JAVA_ARGS:--Xms256m -Xmx768m -XX:TieredStopAtLevel=1 -Djruby.logger.class=com.puppetlabs.jruby_utils.jruby.Slf4jLogger}
PUPPETDB_JAVA_ARGS=${PUPPETDB_JAVA_ARGS:--Xmx256m -XX:TieredStopAtLevel=1}

PACKAGES=(puppetserver puppetdb puppet-terminus-puppetdb postgresql puppet-agent curl)
PUPPET_CONF=/etc/puppet/puppet.conf
SSLDIR=/var/lib/puppet/ssl
CADIR=/etc/puppet/puppetserver/ca
PDB_SSL=/etc/puppetdb/ssl
AGENTS_DIR=$STACK_DIR/agents
PUPPETSERVER_STATUS=https://127.0.0.1:8140/status/v1/simple
PUPPETDB_STATUS=http://127.0.0.1:8080/status/v1/services/puppetdb-status

T0=$(date +%s.%N)
PHASE_T0=$T0
PHASE_NAME=""

log() { printf '[puppet-stack %6.1fs] %s\n' "$(echo "$(date +%s.%N) - $T0" | bc)" "$*"; }
phase() {
    local now
    now=$(date +%s.%N)
    if [[ -n $PHASE_NAME ]]; then
        printf '[puppet-stack %6.1fs] phase %-22s %5.1fs\n' "$(echo "$now - $T0" | bc)" \
            "$PHASE_NAME" "$(echo "$now - $PHASE_T0" | bc)"
    fi
    PHASE_NAME=${1:-}
    PHASE_T0=$now
}
die() { echo "puppet-stack: $*" >&2; exit 1; }

require_root() { [[ $(id -u) -eq 0 ]] || die "run as root (it starts services and writes /etc)"; }

# Shared with .ci/run's other installs.
APT_LOCK=/tmp/porch-apt.lock

install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    command -v bc >/dev/null || missing+=(bc)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        # One apt at a time: CI installs Chromium next to this, and apt-get update fails at
        # once on a held lock. flock serialises porch's own installs; the timeout waits for
        # anyone else's (unattended upgrades).
        flock "$APT_LOCK" env DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout=600 update -q
        flock "$APT_LOCK" env DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
    fi
}

# The server's name must resolve to this machine: agents and porch dial it by name.
ensure_server_resolves() {
    getent hosts "$SERVER" >/dev/null || echo "127.0.0.1 $SERVER" >>/etc/hosts
}

start_postgres() {
    local version cluster
    read -r version cluster _ < <(pg_lsclusters -h | head -1) || true
    if [[ -z ${version:-} ]]; then
        version=$(ls /usr/lib/postgresql | sort -n | tail -1)
        cluster=main
        pg_createcluster "$version" "$cluster"
    fi
    if ! pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1==v && $2==c {print $4}' \
        | grep -q online; then
        pg_ctlcluster "$version" "$cluster" start
    fi
    local password
    password=$(sed -n 's/^\s*password\s*=\s*//p' /etc/puppetdb/conf.d/database.ini)
    [[ -n $password ]] || die "/etc/puppetdb/conf.d/database.ini has no password"
    local psql=(runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qAt)
    if [[ $("${psql[@]}" -c "select 1 from pg_roles where rolname='puppetdb'") != 1 ]]; then
        "${psql[@]}" -c "create role puppetdb login password '$password'"
    else
        "${psql[@]}" -c "alter role puppetdb login password '$password'"
    fi
    if [[ $("${psql[@]}" -c "select 1 from pg_database where datname='puppetdb'") != 1 ]]; then
        "${psql[@]}" -c "create database puppetdb owner puppetdb encoding 'UTF8' template template0"
    fi
    "${psql[@]}" -d puppetdb -c "create extension if not exists pg_trgm"
    log "postgresql $version/$cluster online, database puppetdb ready"
}

# A block of settings this script owns, between markers, so reruns replace it instead of
# appending and whatever else the file holds is kept.
write_managed_block() {
    local file=$1 content=$2
    local begin="# BEGIN porch puppet-stack" end="# END porch puppet-stack"
    touch "$file"
    local rest
    rest=$(sed "/^$begin\$/,/^$end\$/d" "$file")
    printf '%s\n%s\n%s\n%s\n' "$begin" "$content" "$end" "$rest" >"$file.porch-tmp"
    mv "$file.porch-tmp" "$file"
}

configure_puppet() {
    write_managed_block "$PUPPET_CONF" "[main]
certname = $SERVER
server = $SERVER
ssldir = $SSLDIR

[server]
storeconfigs = true
storeconfigs_backend = puppetdb
reports = store,puppetdb"
    cat >/etc/puppet/puppetdb.conf <<EOF
[main]
server_urls = https://$SERVER:8081
soft_write_failure = false
EOF
    cat >/etc/puppet/routes.yaml <<EOF
---
server:
  facts:
    terminus: puppetdb
    cache: yaml
EOF
    mkdir -p /etc/puppet/code/environments/production/manifests /etc/puppet/code/modules
    configure_ca
}

# The CA signs requests that carry alternative names (porch nodes on loopback need
# 127.0.0.1): a lab CA, where every request comes from this script. A running Puppet Server
# reads ca.conf only at start, so a change restarts it.
CA_CONF=/etc/puppet/puppetserver/conf.d/ca.conf
configure_ca() {
    local wanted
    wanted='# Written by porch'"'"'s tests/puppet-stack/up.sh.
certificate-authority: {
    allow-subject-alt-names: true
}'
    [[ $(cat "$CA_CONF" 2>/dev/null) == "$wanted" ]] && return
    printf '%s\n' "$wanted" >"$CA_CONF"
    if pid_alive "$STACK_DIR/puppetserver.pid"; then
        log "ca.conf changed: restarting puppetserver"
        stop_service puppetserver
    fi
}

setup_ca() {
    if [[ ! -f $CADIR/ca_crt.pem || ! -f $SSLDIR/certs/$SERVER.pem ]]; then
        puppetserver ca setup --certname "$SERVER" \
            --subject-alt-names "DNS:$SERVER,DNS:localhost,DNS:puppet,IP:127.0.0.1"
        log "CA created in $CADIR, server certificate $SSLDIR/certs/$SERVER.pem"
    fi
    chown -R puppet:puppet "$CADIR" "$SSLDIR" /etc/puppet/puppetserver /var/lib/puppetserver \
        /var/log/puppetserver
}

# Puppet Server, run as its systemd unit runs it (there is no systemd in CI containers).
start_puppetserver() {
    if curl -skf --max-time 5 "$PUPPETSERVER_STATUS" >/dev/null 2>&1; then
        log "puppetserver already answers on 8140"
        return
    fi
    pid_alive "$STACK_DIR/puppetserver.pid" && { log "puppetserver starting (pid $(cat "$STACK_DIR/puppetserver.pid"))"; return; }
    install -d -o puppet -g puppet -m 0755 /run/puppetserver
    echo -n 0 >/run/puppetserver/restart
    chown puppet:puppet /run/puppetserver/restart
    # shellcheck disable=SC2086
    setsid runuser -u puppet -- /usr/bin/java $PUPPETSERVER_JAVA_ARGS \
        -Djruby.lib=/usr/share/jruby/lib -XX:+CrashOnOutOfMemoryError \
        -XX:ErrorFile=/var/log/puppetserver/puppetserver_err_pid%p.log \
        -jar /usr/share/puppetserver/puppetserver.jar \
        --config /etc/puppet/puppetserver/conf.d \
        --bootstrap-config /etc/puppet/puppetserver/services.d \
        --restart-file /run/puppetserver/restart \
        >"$STACK_DIR/puppetserver.log" 2>&1 </dev/null &
    echo $! >"$STACK_DIR/puppetserver.pid"
    log "puppetserver started (pid $!, log $STACK_DIR/puppetserver.log)"
}

configure_puppetdb_tls() {
    install -d -o puppetdb -g puppetdb -m 0750 "$PDB_SSL"
    install -o puppetdb -g puppetdb -m 0600 "$SSLDIR/private_keys/$SERVER.pem" "$PDB_SSL/private.pem"
    install -o puppetdb -g puppetdb -m 0644 "$SSLDIR/certs/$SERVER.pem" "$PDB_SSL/public.pem"
    install -o puppetdb -g puppetdb -m 0644 "$SSLDIR/certs/ca.pem" "$PDB_SSL/ca.pem"
    cat >/etc/puppetdb/conf.d/jetty.ini <<EOF
# Written by porch's tests/puppet-stack/up.sh.
[jetty]
host = 127.0.0.1
port = 8080
ssl-host = 0.0.0.0
ssl-port = 8081
ssl-key = $PDB_SSL/private.pem
ssl-cert = $PDB_SSL/public.pem
ssl-ca-cert = $PDB_SSL/ca.pem
access-log-config = /etc/puppetdb/request-logging.xml
EOF
}

# PuppetDB, run as its systemd unit runs it (`puppetdb foreground` does not exist).
start_puppetdb() {
    if curl -sf --max-time 5 "$PUPPETDB_STATUS" >/dev/null 2>&1; then
        log "puppetdb already answers on 8080/8081"
        return
    fi
    pid_alive "$STACK_DIR/puppetdb.pid" && { log "puppetdb starting (pid $(cat "$STACK_DIR/puppetdb.pid"))"; return; }
    install -d -o puppetdb -g puppetdb -m 0755 /run/puppetdb
    echo -n 0 >/run/puppetdb/restart
    chown puppetdb:puppetdb /run/puppetdb/restart
    # shellcheck disable=SC2086
    setsid runuser -u puppetdb -- /usr/bin/java $PUPPETDB_JAVA_ARGS \
        -Djava.security.egd=/dev/urandom -XX:OnOutOfMemoryError="kill -9 %p" \
        -cp /usr/share/puppetdb/puppetdb.jar clojure.main -m puppetlabs.puppetdb.core services \
        --config /etc/puppetdb/conf.d --bootstrap-config /etc/puppetdb/bootstrap.cfg \
        --restart-file /run/puppetdb/restart \
        >"$STACK_DIR/puppetdb.log" 2>&1 </dev/null &
    echo $! >"$STACK_DIR/puppetdb.pid"
    log "puppetdb started (pid $!, log $STACK_DIR/puppetdb.log)"
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Waits for a status URL, giving up early if the process died.
wait_for() {
    local name=$1 url=$2 pidfile=$3 deadline=$((SECONDS + WAIT_SECS))
    until curl -skf --max-time 5 "$url" >/dev/null 2>&1; do
        if [[ -f $pidfile ]] && ! pid_alive "$pidfile"; then
            tail -30 "$STACK_DIR/$name.log" >&2 || true
            die "$name exited before answering $url (log: $STACK_DIR/$name.log)"
        fi
        ((SECONDS < deadline)) || die "$name did not answer $url within ${WAIT_SECS}s (log: $STACK_DIR/$name.log)"
        sleep 1
    done
    log "$name answers $url"
}

write_env() {
    cat >"$STACK_DIR/env" <<EOF
# Written by tests/puppet-stack/up.sh; source it.
PUPPET_SERVER=$SERVER
PUPPET_SERVER_URL=https://$SERVER:8140
PUPPETDB_URL=https://$SERVER:8081
PUPPETDB_HTTP_URL=http://127.0.0.1:8080
PUPPET_CA_CERT=$SSLDIR/certs/ca.pem
PUPPET_CRL=$SSLDIR/crl.pem
PUPPET_SERVER_SSLDIR=$SSLDIR
PUPPET_CODEDIR=/etc/puppet/code
PORCH_STACK_AGENTS_DIR=$AGENTS_DIR
EOF
}

# One identity: its own confdir, vardir and ssldir, a CSR submitted to the running Puppet Server,
# signed by its CA, the certificate downloaded. Kept if its certificate verifies against the CA.
identity_dir() { echo "$AGENTS_DIR/$1"; }

write_identity_conf() {
    local name=$1 dir
    dir=$(identity_dir "$name")
    mkdir -p "$dir/etc" "$dir/var" "$dir/ssl" "$dir/run" "$dir/log"
    cat >"$dir/etc/puppet.conf" <<EOF
# Written by porch's tests/puppet-stack/up.sh for the agent identity $name.
[main]
certname = $name
server = $SERVER
confdir = $dir/etc
vardir = $dir/var
ssldir = $dir/ssl
rundir = $dir/run
logdir = $dir/log
codedir = $dir/etc/code
# Debian's puppet puts lastrunfile under /var/cache/puppet/public whatever the vardir: each
# identity keeps its own, or their run summaries overwrite one another.
publicdir = $dir/var/public
EOF
}

# Alternative names of `certs` identities, besides DNS:<name> (which the CA always adds).
LOOPBACK_ALT_NAMES="DNS:localhost,IP:127.0.0.1"

# identity_valid NAME KIND: KIND "loopback" also wants the loopback alternative names.
identity_valid() {
    local dir
    dir=$(identity_dir "$1")
    [[ -f $dir/ssl/certs/$1.pem && -f $dir/ssl/private_keys/$1.pem ]] \
        && openssl verify -CAfile "$SSLDIR/certs/ca.pem" "$dir/ssl/certs/$1.pem" >/dev/null 2>&1 \
        || return 1
    [[ ${2:-} != loopback ]] \
        || openssl x509 -in "$dir/ssl/certs/$1.pem" -noout -ext subjectAltName 2>/dev/null \
            | grep -q 'IP Address:127.0.0.1'
}

# Keys and CSRs come from openssl and travel over the CA's HTTP API, as `puppet ssl` would send
# them: one Ruby start (the signing) instead of two per identity, which on two busy cores is the
# difference between seconds and a minute.
submit_request() {
    local name=$1 kind=${2:-} dir ca_url=https://$SERVER:8140/puppet-ca/v1
    local alt=()
    [[ $kind == loopback ]] && alt=(-addext "subjectAltName=DNS:$name,$LOOPBACK_ALT_NAMES")
    dir=$(identity_dir "$name")
    mkdir -p "$dir/ssl/private_keys" "$dir/ssl/certs" "$dir/ssl/certificate_requests"
    chmod 0750 "$dir/ssl/private_keys"
    openssl genrsa -traditional -out "$dir/ssl/private_keys/$name.pem" 2048 2>/dev/null
    chmod 0640 "$dir/ssl/private_keys/$name.pem"
    openssl req -new -key "$dir/ssl/private_keys/$name.pem" -subj "/CN=$name" "${alt[@]}" \
        -out "$dir/ssl/certificate_requests/$name.pem"
    cp "$SSLDIR/certs/ca.pem" "$dir/ssl/certs/ca.pem"
    curl -sSf --max-time 30 --cacert "$dir/ssl/certs/ca.pem" -X PUT -H 'Content-Type: text/plain' \
        --data-binary "@$dir/ssl/certificate_requests/$name.pem" \
        "$ca_url/certificate_request/$name" >/dev/null
}

download_cert() {
    local name=$1 dir ca_url=https://$SERVER:8140/puppet-ca/v1
    dir=$(identity_dir "$name")
    curl -sSf --max-time 30 --cacert "$dir/ssl/certs/ca.pem" \
        -o "$dir/ssl/certs/$name.pem" "$ca_url/certificate/$name"
    curl -sSf --max-time 30 --cacert "$dir/ssl/certs/ca.pem" \
        -o "$dir/ssl/crl.pem" "$ca_url/certificate_revocation_list/ca"
}

# create_identities KIND NAME...: KIND "agent", or "loopback" for porch nodes and clients.
create_identities() {
    local kind=$1
    shift
    curl -skf --max-time 5 "$PUPPETSERVER_STATUS" >/dev/null 2>&1 \
        || die "Puppet Server does not answer $PUPPETSERVER_STATUS: run '$0 up' first"
    local todo=() name
    for name in "$@"; do
        # Rewritten every time, so settings added here reach identities made before.
        write_identity_conf "$name"
        identity_valid "$name" "$kind" && continue
        todo+=("$name")
    done
    if ((${#todo[@]})); then
        log "creating identities: ${todo[*]}"
        local stale=()
        for name in "${todo[@]}"; do
            rm -rf "$(identity_dir "$name")/ssl"
            submit_request "$name" "$kind" 2>/dev/null || stale+=("$name")
        done
        # The CA refuses a request for a name it signed before (the identity directory was
        # removed): revoke and forget the old certificate, then ask again.
        if ((${#stale[@]})); then
            log "the CA already knows ${stale[*]}: cleaning"
            puppetserver ca clean --certname "$(IFS=,; echo "${stale[*]}")" >/dev/null
            for name in "${stale[@]}"; do submit_request "$name" "$kind"; done
        fi
        puppetserver ca sign --certname "$(IFS=,; echo "${todo[*]}")"
        for name in "${todo[@]}"; do
            download_cert "$name"
            identity_valid "$name" "$kind" || die "identity $name: no valid certificate after signing"
        done
    fi
    for name in "$@"; do
        local dir
        dir=$(identity_dir "$name")
        printf '  %-16s confdir %s  ssldir %s\n' "$name" "$dir/etc" "$dir/ssl"
    done
}

cmd_up() {
    require_root
    mkdir -p "$STACK_DIR" "$AGENTS_DIR"
    phase packages; install_packages
    phase postgresql; start_postgres
    phase puppet-config; ensure_server_resolves; configure_puppet
    phase ca; setup_ca
    # Both JVMs start together: PuppetDB needs only its certificate and PostgreSQL.
    phase jvms-start; configure_puppetdb_tls; start_puppetserver; start_puppetdb
    phase puppetdb-ready; wait_for puppetdb "$PUPPETDB_STATUS" "$STACK_DIR/puppetdb.pid"
    phase puppetserver-ready; wait_for puppetserver "$PUPPETSERVER_STATUS" "$STACK_DIR/puppetserver.pid"
    phase; write_env
    cmd_status
}

cmd_status() {
    local ps=down pdb=down
    curl -skf --max-time 5 "$PUPPETSERVER_STATUS" >/dev/null 2>&1 && ps=up
    curl -sf --max-time 5 "$PUPPETDB_STATUS" >/dev/null 2>&1 && pdb=up
    cat <<EOF
Puppet stack (total $(printf '%.1f' "$(echo "$(date +%s.%N) - $T0" | bc)")s):
  Puppet Server  $ps  https://$SERVER:8140   log $STACK_DIR/puppetserver.log
  PuppetDB       $pdb  https://$SERVER:8081 (client certificates from the CA), http://127.0.0.1:8080 (local)   log $STACK_DIR/puppetdb.log
  CA             $CADIR   CA certificate $SSLDIR/certs/ca.pem   CRL $SSLDIR/crl.pem
  server cert    $SSLDIR/certs/$SERVER.pem   key $SSLDIR/private_keys/$SERVER.pem
  code           /etc/puppet/code/environments/<env>
  identities     $AGENTS_DIR/<certname>/{etc,var,ssl}
  env file       $STACK_DIR/env
EOF
}

# Stops a JVM this script started and waits until it is gone.
stop_service() {
    local name=$1
    if pid_alive "$STACK_DIR/$name.pid"; then
        # The pid is runuser's; the JVM is its child in the same session.
        local pid
        pid=$(cat "$STACK_DIR/$name.pid")
        kill -- "-$pid" 2>/dev/null || kill "$pid"
        local deadline=$((SECONDS + 60))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
        log "stopped $name (session $pid)"
    fi
    rm -f "$STACK_DIR/$name.pid"
}

cmd_down() {
    require_root
    local name
    for name in puppetserver puppetdb; do
        stop_service "$name"
    done
    pg_lsclusters -h | awk '$4=="online" {print $1, $2}' | while read -r v c; do
        pg_ctlcluster "$v" "$c" stop && log "stopped postgresql $v/$c"
    done
}

case ${1:-up} in
    up) cmd_up ;;
    agents)
        require_root
        n=${2:?usage: up.sh agents N [PREFIX]}
        prefix=${3:-agent}
        names=()
        for ((i = 1; i <= n; i++)); do names+=("$prefix$i"); done
        phase identities; create_identities agent "${names[@]}"; phase
        ;;
    certs)
        require_root
        shift
        (($#)) || die "usage: up.sh certs NAME..."
        phase identities; create_identities loopback "$@"; phase
        ;;
    status) cmd_status ;;
    down) cmd_down ;;
    *) die "unknown command '$1' (up, agents, certs, status, down)" ;;
esac
