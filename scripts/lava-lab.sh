#!/usr/bin/env bash
# A LAVA instance on this one Debian 12 machine, for trying cma-harness against
# LAVA: PostgreSQL, the event publisher, the web service (gunicorn), the
# scheduler and two workers with one qemu device each, all from Debian's archive
# and all started by hand (PID 1 need not be systemd; nothing here uses
# systemctl).  Run as root.
# docs/lava-lab.md says what it installs, starts and writes.
#
#   lava-lab.sh up      install once (~2 min, some 200 packages; a log, printed
#                       only on failure), create what is missing of the admin
#                       user, its API token, the workers and the devices, start
#                       what is not running, and wait until the web service
#                       answers and both workers are online
#   lava-lab.sh status  one line per service, worker and device; exit 0 if all
#                       are up, 1 if not
#   lava-lab.sh down    stop what `up` started (PostgreSQL only if `up` started
#                       it), by the pids it recorded; the packages stay
#
# Environment: CMA_HARNESS_CACHE (the state lives in its lava-lab/),
# LAVA_LAB_PORT (the web service's port on 127.0.0.1, default 8000).
set -euo pipefail

cache=${CMA_HARNESS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cma-harness}
state=$cache/lava-lab
run=$state/run          # <service>.pid, postgresql.ours
logs=$state/logs        # <service>.log: each service's stdout and stderr
token_file=$state/token # the admin's API token (mode 0600)
password_file=$state/admin-password
log=$cache/logs/lava-lab.log
port=${LAVA_LAB_PORT:-8000}
url=http://127.0.0.1:$port/
ws_port=8001     # lava-publisher's websocket (the workers listen to it)
event_port=5500  # lava-publisher's ZMQ events (the scheduler listens to it)
admin=admin
workers=(lava-lab-1 lava-lab-2)
devices=(qemu-01 qemu-02) # devices[i] is on workers[i]
dictionaries=/etc/lava-server/dispatcher-config/devices
packages=(lava-server lava-dispatcher lava-coordinator lavacli)
# The environment of every service and management command: a clean one, as
# systemd would give (the caller's proxies or Python variables stay out).
svc_env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	LANG=C.UTF-8 LC_ALL=C.UTF-8 HOME=/root)

# The settings (prod.py reads LAVA_*SETTINGS_* variables) of every process
# that sends or reads events: no settings file of ours in /etc.
events_env=(env LAVA_YAML_SETTINGS_EVENT_NOTIFICATION=true
	"LAVA_SETTINGS_EVENT_SOCKET=tcp://127.0.0.1:$event_port")
services=(events web scheduler "${workers[@]/#/worker-}")

say() { echo "lava-lab: $*"; }

fail() { # MESSAGE [LOG]: one error line, the log's tail, exit 2
	local from=${2:-$log}
	echo "lava-lab: error: $1 (log: $from)" >&2
	[ -f "$from" ] && tail -n 20 "$from" >&2
	exit 2
}

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

manage() { "${svc_env[@]}" lava-server manage "$@"; }

# --- processes -----------------------------------------------------------

# The pid in $run/NAME.pid if that process is alive and its command line
# contains MATCH (a recycled pid is not ours); nothing and status 1 otherwise.
pid_of() {
	local name=$1 match=$2 pid cmd
	[ -f "$run/$name.pid" ] || return 1
	pid=$(cat "$run/$name.pid")
	case $pid in '' | *[!0-9]*) return 1 ;; esac
	cmd=$(tr '\0' ' ' 2>/dev/null </proc/"$pid"/cmdline) || return 1
	case $cmd in *"$match"*) echo "$pid" ;; *) return 1 ;; esac
}

# NAME MATCH COMMAND...: start COMMAND in its own session, in /, with the clean
# environment, its output in $logs/NAME.log, and record its pid.
start_service() {
	local name=$1 match=$2 pid
	shift 2
	if pid=$(pid_of "$name" "$match"); then
		say "$name already running (pid $pid)"
		return 0
	fi
	echo "=== $(date -u '+%F %T') lava-lab: starting $name" >>"$logs/$name.log"
	# Not a process-group leader (no job control here), so setsid execs in
	# place and $! is the service's own pid.
	(cd / && exec setsid "${svc_env[@]}" "$@" </dev/null >>"$logs/$name.log" 2>&1) &
	echo $! >"$run/$name.pid"
	sleep 0.3
	pid_of "$name" "$match" >/dev/null || fail "$name exited at once" "$logs/$name.log"
	say "$name started (pid $(cat "$run/$name.pid"), log $logs/$name.log)"
}

# NAME MATCH PORTS...: fail if NAME is not running and one of PORTS on
# 127.0.0.1 already answers (someone else's).
port_free() {
	local name=$1 match=$2 p
	shift 2
	pid_of "$name" "$match" >/dev/null && return 0
	for p in "$@"; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			fail "something else listens on 127.0.0.1:$p, which $name needs"
		fi
	done
}

match_of() { # SERVICE: what its command line contains
	case $1 in
	events) echo lava-publisher ;;
	web) echo lava_server.wsgi ;;
	scheduler) echo lava-scheduler ;;
	*) echo lava-worker ;;
	esac
}

# Every process below PID (children, their children, ...), one a line.
descendants() {
	ps -e -o pid= -o ppid= | awk -v root="$1" '
		{ pid[NR] = $1; ppid[NR] = $2 }
		END {
			want[root] = 1
			do {
				changed = 0
				for (i = 1; i <= NR; i++)
					if ((ppid[i] in want) && !(pid[i] in want)) { want[pid[i]] = 1; changed = 1 }
			} while (changed)
			for (p in want) if (p != root) print p
		}'
}

alive_any() { # PIDS...: is any of them still alive?
	# A zombie is not: our services' parent is PID 1 once `up` has exited, and
	# a PID 1 that is not an init reaps them late, if at all.
	local p st
	for p in "$@"; do
		st=$(ps -o stat= -p "$p" 2>/dev/null) || continue
		case $st in Z*) ;; *) return 0 ;; esac
	done
	return 1
}

wait_gone() { # SECONDS PIDS...
	local tenths=$(($1 * 10))
	shift
	while [ "$tenths" -gt 0 ] && alive_any "$@"; do
		sleep 0.1
		tenths=$((tenths - 1))
	done
}

# NAME MATCH: stop the recorded process and whatever it started (a worker's
# lava-run jobs and their QEMU run in sessions of their own): SIGTERM it, then
# SIGTERM what is left below it, then SIGKILL what is still there.
stop_service() {
	local name=$1 match=$2 pid tree
	if ! pid=$(pid_of "$name" "$match"); then
		rm -f "$run/$name.pid"
		return 0
	fi
	mapfile -t tree < <(descendants "$pid")
	say "stopping $name (pid $pid${tree:+, and ${#tree[@]} processes under it})"
	kill -TERM "$pid" 2>/dev/null || true
	wait_gone 10 "$pid"
	if [ ${#tree[@]} -gt 0 ]; then
		kill -TERM "${tree[@]}" 2>/dev/null || true
		wait_gone 10 "${tree[@]}"
	fi
	kill -KILL "$pid" "${tree[@]}" 2>/dev/null || true
	rm -f "$run/$name.pid"
}

# --- PostgreSQL ----------------------------------------------------------

# "VERSION NAME PORT STATUS DATADIR" of the cluster LAVA uses (port 5432, the
# one lava-server's postinst configures), or of the first one.
pg_cluster() {
	local line
	line=$(pg_lsclusters -h 2>/dev/null | awk '$3 == 5432 { print; exit }')
	[ -n "$line" ] || line=$(pg_lsclusters -h 2>/dev/null | head -n 1)
	[ -n "$line" ] || return 1
	echo "$line" | awk '{ print $1, $2, $3, $4, $6 }'
}

postmaster_pid() { # DATADIR
	head -n 1 "$1/postmaster.pid" 2>/dev/null
}

start_postgresql() {
	local ver name cport status datadir
	read -r ver name cport status datadir < <(pg_cluster) ||
		fail "no PostgreSQL cluster (pg_lsclusters lists none)"
	if [ "$status" = online ]; then
		postmaster_pid "$datadir" >"$run/postgresql.pid"
		if [ -f "$run/postgresql.ours" ]; then
			say "PostgreSQL $ver/$name already running (pid $(cat "$run/postgresql.pid"), started by lava-lab)"
		else
			say "PostgreSQL $ver/$name already running (pid $(cat "$run/postgresql.pid"), not started by lava-lab: left alone by down)"
		fi
		return 0
	fi
	say "starting PostgreSQL $ver/$name"
	pg_ctlcluster "$ver" "$name" start >>"$log" 2>&1 </dev/null ||
		fail "pg_ctlcluster $ver $name start failed" "/var/log/postgresql/postgresql-$ver-$name.log"
	postmaster_pid "$datadir" >"$run/postgresql.pid"
	echo "$ver $name" >"$run/postgresql.ours"
	say "PostgreSQL $ver/$name started (pid $(cat "$run/postgresql.pid"))"
}

stop_postgresql() {
	local ver name
	if [ ! -f "$run/postgresql.ours" ]; then
		rm -f "$run/postgresql.pid"
		return 0
	fi
	read -r ver name <"$run/postgresql.ours"
	if pg_lsclusters -h 2>/dev/null | awk -v v="$ver" -v n="$name" '$1 == v && $2 == n && $4 == "online" { f = 1 } END { exit !f }'; then
		say "stopping PostgreSQL $ver/$name"
		pg_ctlcluster "$ver" "$name" stop >>"$log" 2>&1 </dev/null ||
			echo "lava-lab: warning: pg_ctlcluster $ver $name stop failed" >&2
	fi
	rm -f "$run/postgresql.ours" "$run/postgresql.pid"
}

# --- the REST API ----------------------------------------------------------

# rest MODE: GET from the API with the admin's token, no proxy.
#   answers   exit 0 if the API answers 200
#   workers   "HOSTNAME STATE HEALTH" a line
#   devices   "HOSTNAME WORKER STATE HEALTH" a line
rest() {
	/usr/bin/python3 - "$url" "$token_file" "$1" <<'EOF'
import json, sys, urllib.request
url, token_file, mode = sys.argv[1:4]
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

def get(path):
    req = urllib.request.Request(url + "api/v0.2/" + path)
    try:
        with open(token_file) as f:
            req.add_header("Authorization", "Token " + f.read().strip())
    except OSError:
        pass
    with opener.open(req, timeout=10) as r:
        return json.load(r)

def results(path):
    data = get(path + "?limit=1000")
    return data["results"] if isinstance(data, dict) else data

try:
    if mode == "answers":
        get("")
    elif mode == "workers":
        for w in results("workers/"):
            print(w["hostname"], w["state"], w["health"])
    elif mode == "devices":
        for d in results("devices/"):
            print(d["hostname"], d.get("worker_host") or "-", d["state"], d["health"])
except Exception as exc:
    print(exc, file=sys.stderr)
    sys.exit(1)
EOF
}

# --- up ----------------------------------------------------------------------

apt_update() {
	# A mirror in mid-sync can fail one index; retry, then go on with what we have.
	for _ in 1 2 3; do
		apt-get update -q -o DPkg::Lock::Timeout=600 >>"$log" 2>&1 && return 0
		sleep 5
	done
	echo "lava-lab: warning: apt-get update reported errors; continuing" >&2
}

apt_install() {
	# DPkg::Lock::Timeout: wait for another apt or dpkg instead of failing.
	env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		-o DPkg::Lock::Timeout=600 "$@" >>"$log" 2>&1
}

# The packages, once: postgresql, then (PostgreSQL running: lava-server's
# postinst creates its database, and on a machine without systemd nothing
# starts PostgreSQL for us) LAVA's own.
install_packages() {
	local missing=() p
	installed postgresql || missing+=(postgresql)
	for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
	if [ ${#missing[@]} = 0 ]; then
		start_postgresql
		return 0
	fi
	install_begin=$SECONDS
	say "installing ${missing[*]} from Debian's archive (once: ~2 min, some 200 packages; log $log)"
	apt_update
	if ! installed postgresql; then
		apt_install postgresql || fail "apt-get install postgresql failed"
	fi
	start_postgresql
	apt_install "${packages[@]}" || fail "apt-get install ${packages[*]} failed"
	for p in "${packages[@]}"; do installed "$p" || fail "$p is not fully installed"; done
	say "installed in $((SECONDS - install_begin)) s"
}

# What the database holds, in one Django start (a `lava-server manage` costs
# ~1 s): "user NAME", "token USER SECRET", "type NAME", "worker NAME TOKEN",
# "device NAME" lines.  A fixed program: no string of ours goes into it.
inventory() {
	manage shell -c '
from django.contrib.auth.models import User
from linaro_django_xmlrpc.models import AuthToken
from lava_scheduler_app.models import Device, DeviceType, Worker
for u in User.objects.all():
    print("user", u.username)
for t in AuthToken.objects.all():
    print("token", t.user.username, t.secret)
for t in DeviceType.objects.all():
    print("type", t.name)
for w in Worker.objects.all():
    print("worker", w.hostname, w.token)
for d in Device.objects.all():
    print("device", d.hostname)
'
}

# The admin user, its API token, the qemu device type, the two workers (their
# tokens in their directories) and the two devices with their dictionaries;
# only what is missing is created (with `lava-server manage`).
setup_lava() {
	local have i w d token pw dict
	have=$(inventory) || fail "cannot read LAVA's database (lava-server manage shell)"
	if ! grep -qxF "user $admin" <<<"$have"; then
		say "creating the superuser '$admin'"
		# Without --passwd it makes up a password and prints it (no argv leak).
		pw=$(manage users add "$admin" --superuser --staff) ||
			fail "lava-server manage users add $admin failed"
		(umask 077 && printf '%s\n' "$pw" >"$password_file")
	fi
	if [ -s "$token_file" ] && grep -qxF "token $admin $(cat "$token_file")" <<<"$have"; then
		:
	else
		say "creating an API token for '$admin'"
		token=$(manage tokens add --user "$admin" --description lava-lab) ||
			fail "lava-server manage tokens add failed"
		(umask 077 && printf '%s\n' "$token" >"$token_file")
	fi
	chmod 600 "$token_file"

	if ! grep -qxF "type qemu" <<<"$have"; then
		say "adding the device type qemu"
		manage device-types add qemu >>"$log" 2>&1 || fail "lava-server manage device-types add qemu failed"
	fi

	for i in "${!workers[@]}"; do
		w=${workers[$i]}
		d=${devices[$i]}
		mkdir -p "$state/workers/$w"
		token=$(awk -v w="$w" '$1 == "worker" && $2 == w { print $3 }' <<<"$have")
		if [ -z "$token" ]; then
			say "adding the worker $w"
			token=$(manage workers add "$w" --description "lava-lab worker $((i + 1))" |
				sed -n 's/^Token: //p') || fail "lava-server manage workers add $w failed"
			[ -n "$token" ] || fail "no token for the new worker $w"
		fi
		(umask 077 && printf '%s\n' "$token" >"$state/workers/$w/token")
		# The dictionary: no memory (it would override a job's context:
		# memory); a lan9118 NIC unless the job's context names a model (the
		# template's default, virtio, is refused by vexpress-a9/-a15 and
		# smdkc210, which all have a LAN9118-type chip).
		dict=$(printf '%s\n' \
			"{# lava-lab (scripts/lava-lab.sh): $d on $w #}" \
			"{% extends 'qemu.jinja2' %}" \
			"{% set mac_addr = '52:54:00:12:34:$(printf %02x $((i + 1)))' %}" \
			"{% set model = model | default('model=lan9118') %}")
		if [ "$(cat "$dictionaries/$d.jinja2" 2>/dev/null)" != "$dict" ]; then
			printf '%s\n' "$dict" >"$dictionaries/$d.jinja2"
			chmod 644 "$dictionaries/$d.jinja2"
		fi
		if ! grep -qxF "device $d" <<<"$have"; then
			say "adding the device $d (qemu) on $w"
			manage devices add "$d" --device-type qemu --worker "$w" >>"$log" 2>&1 ||
				fail "lava-server manage devices add $d failed"
		fi
	done
}

# SECONDS COMMAND...: run COMMAND every second until it succeeds (status 0),
# SECONDS pass (1) or a service `up` started is gone (2: its name on stdout).
wait_for() {
	local deadline=$((SECONDS + $1)) name
	shift
	until "$@"; do
		for name in "${services[@]}"; do
			[ -f "$run/$name.pid" ] || continue
			pid_of "$name" "$(match_of "$name")" >/dev/null || { echo "$name"; return 2; }
		done
		[ $SECONDS -lt $deadline ] || return 1
		sleep 1
	done
}

# WHAT LOG SECONDS COMMAND...: wait_for, or fail saying why (with the tail of
# the dead service's log, or of LOG).
wait_or_fail() {
	local what=$1 log_name=$2 seconds=$3 dead rc=0
	shift 3
	dead=$(wait_for "$seconds" "$@") || rc=$?
	case $rc in
	0) ;;
	2) fail "$dead exited while waiting for $what" "$logs/$dead.log" ;;
	*) fail "no $what after $seconds s" "$logs/$log_name.log" ;;
	esac
}

web_answers() { rest answers 2>/dev/null; }

workers_online() {
	local lines w
	lines=$(rest workers 2>/dev/null) || return 1
	for w in "${workers[@]}"; do
		grep -q "^$w Online " <<<"$lines" || return 1
	done
}

up() {
	local begin=$SECONDS i w name
	mkdir -p "$run" "$logs" "$cache/logs"
	: >"$log"
	port_free events lava-publisher "$ws_port" "$event_port"
	port_free web lava_server.wsgi "$port"
	install_packages
	[ -d "$dictionaries" ] || fail "no $dictionaries: is lava-server installed?"
	setup_lava

	# lava-publisher.service's command (it drops to lavaserver itself): the
	# events that wake the scheduler when a job is submitted and a worker
	# when a job is scheduled for it.  Without it a job waits for the
	# scheduler's 20-s round and the worker's next ping.
	start_service events lava-publisher "${events_env[@]}" \
		/usr/bin/lava-server manage lava-publisher --level INFO --log-file - \
		--host 127.0.0.1 --port "$ws_port"
	# lava-server-gunicorn.service's command; the cookies may travel over
	# plain http (a browser's login to http://127.0.0.1 works).
	start_service web lava_server.wsgi "${events_env[@]}" \
		LAVA_YAML_SETTINGS_CSRF_COOKIE_SECURE=false LAVA_YAML_SETTINGS_SESSION_COOKIE_SECURE=false \
		/usr/bin/gunicorn3 lava_server.wsgi --log-level INFO --log-file - \
		-u lavaserver -g lavaserver --worker-class eventlet --workers 2 \
		--bind "127.0.0.1:$port"
	wait_or_fail "answer from the web service on $url" web 60 web_answers
	say "web service on $url"

	# lava-scheduler.service's command (it drops to lavaserver itself).
	start_service scheduler lava-scheduler "${events_env[@]}" \
		/usr/bin/lava-server manage lava-scheduler --level DEBUG --log-file - \
		--event-url "tcp://127.0.0.1:$event_port"

	for i in "${!workers[@]}"; do
		w=${workers[$i]}
		# lava-worker.service's command, with a directory and a token of its
		# own, pinging every 5 s instead of 20.
		start_service "worker-$w" lava-worker \
			/usr/bin/lava-worker --level INFO --log-file - --url "$url" --name "$w" \
			--ws-url "http://127.0.0.1:$ws_port/ws/" \
			--worker-dir "$state/workers/$w" --token-file "$state/workers/$w/token" \
			--ping-interval 5
	done
	wait_or_fail "workers online" "worker-${workers[0]}" 60 workers_online
	for name in "${services[@]}"; do
		pid_of "$name" "$(match_of "$name")" >/dev/null ||
			fail "$name is not running any more" "$logs/$name.log"
	done
	say "workers ${workers[*]} online; devices ${devices[*]}"
	say "token of '$admin' in $token_file (its password in $password_file)"
	say "up in $((SECONDS - begin)) s"
}

# --- status, down ------------------------------------------------------------

status() {
	local ok=0 pid name w lines ver cname cport cstatus datadir health
	if ! installed lava-server; then
		say "lava-server is not installed (lava-lab.sh up installs it)"
		return 1
	fi
	if read -r ver cname cport cstatus datadir < <(pg_cluster); then
		if [ "$cstatus" = online ]; then
			pid=$(postmaster_pid "$datadir")
			if [ -f "$run/postgresql.ours" ]; then
				say "$(printf '%-18s' postgresql) running (pid $pid, cluster $ver/$cname, started by lava-lab)"
			else
				say "$(printf '%-18s' postgresql) running (pid $pid, cluster $ver/$cname, not started by lava-lab)"
			fi
		else
			say "$(printf '%-18s' postgresql) not running (cluster $ver/$cname)"
			ok=1
		fi
	else
		say "$(printf '%-18s' postgresql) no cluster"
		ok=1
	fi
	for name in "${services[@]}"; do
		if pid=$(pid_of "$name" "$(match_of "$name")"); then
			say "$(printf '%-18s' "$name") running (pid $pid)"
		else
			say "$(printf '%-18s' "$name") not running"
			ok=1
		fi
	done
	if lines=$(rest workers 2>/dev/null); then
		for w in "${workers[@]}"; do
			read -r _ cstatus health < <(grep "^$w " <<<"$lines" || echo "$w unknown unknown")
			say "worker $w: $cstatus, health $health"
			[ "$cstatus" = Online ] || ok=1
		done
		while read -r name w cstatus health; do
			say "device $name on $w: $cstatus, health $health"
			# Unknown and Looping take jobs too (no health check is defined);
			# Bad, Maintenance and Retired do not.
			case $health in Good | Unknown | Looping) ;; *) ok=1 ;; esac
		done < <(rest devices 2>/dev/null | sort)
	else
		say "web service: no answer on $url"
		ok=1
	fi
	say "url $url, token $token_file (user $admin), logs $logs/"
	return $ok
}

down() {
	local i name
	mkdir -p "$run"
	# The reverse order of up: the workers (and their jobs) first.
	for ((i = ${#services[@]} - 1; i >= 0; i--)); do
		name=${services[$i]}
		stop_service "$name" "$(match_of "$name")"
	done
	stop_postgresql
	say "down"
}

[ "$(id -u)" = 0 ] || { echo "lava-lab: error: run as root (it installs packages and starts services)" >&2; exit 2; }
case $port in '' | *[!0-9]*) echo "lava-lab: error: LAVA_LAB_PORT '$port' is not a port number" >&2; exit 2 ;; esac
case ${1:-} in
up) up ;;
status) status ;;
down) down ;;
*)
	echo "usage: lava-lab.sh up|status|down" >&2
	exit 2
	;;
esac
