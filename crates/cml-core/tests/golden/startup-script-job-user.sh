#!/bin/bash
# Runner machine setup, rendered by cml 0.1.0.
set -Eeuo pipefail
umask 077
# Files go below $CML_MACHINE_ROOT (empty on a real machine; a sandbox in tests).
R=${CML_MACHINE_ROOT:-}
log() { echo "cml-setup: $*"; echo "cml-setup: $*" > /dev/console 2>/dev/null || true; }

# 0. Until cml.service runs, any failure logs to the console and powers the machine off
# (shutdown behaviour `terminate` removes it): no half-set-up machine lives on.
cml_setup_failed() {
  trap - ERR EXIT HUP INT TERM
  local code=$1
  if [ "$code" = 0 ]; then code=1; fi
  log "setup failed at line $2 of the startup script (exit status $1); powering off"
  systemctl poweroff --no-block || poweroff || shutdown -h now || true
  exit "$code"
}
trap 'cml_setup_failed $? $LINENO' ERR EXIT
trap 'cml_setup_failed 129 $LINENO' HUP
trap 'cml_setup_failed 130 $LINENO' INT
trap 'cml_setup_failed 143 $LINENO' TERM

# 1. Secrets: a root-only file; cml.service is given its path only.
install -d -m 0700 "$R/etc/cml"
cat > "$R/etc/cml/credentials" <<'CML_CREDENTIALS'
REPO_TOKEN="ghp_secretvalue"
CML_CREDENTIALS
chmod 0600 "$R/etc/cml/credentials"
# The service's other settings, none secret.
cat > "$R/etc/cml/env" <<'CML_ENV'
CML_GITHUB_RUNNER_RELEASES_URL="http://mirror/releases"
CML_ENV
chmod 0600 "$R/etc/cml/env"

# 1b. A hard end, set before anything can fail: a timer powers the machine off
# (shutdown behaviour `terminate` removes it) however cml fares.
install -d -m 0755 "$R/etc/systemd/system"
cat > "$R/etc/systemd/system/cml-deadline.timer" <<'CML_TIMER'
[Unit]
Description=cml: the machine's maximum lifetime

[Timer]
OnBootSec=435600s
AccuracySec=1s

[Install]
WantedBy=timers.target
CML_TIMER
cat > "$R/etc/systemd/system/cml-deadline.service" <<'CML_DEADLINE'
[Unit]
Description=cml: power off at the maximum lifetime

[Service]
Type=oneshot
ExecStart=/bin/systemctl poweroff --no-block
CML_DEADLINE
systemctl daemon-reload
systemctl enable --now cml-deadline.timer
log 'this machine powers off 435600 s after boot at the latest'

# 2. The user's startup script, before cml is installed.
cat > "$R/etc/cml/startup.sh" <<'CML_USER_SCRIPT'
#!/bin/sh
echo 'network setup'
CML_USER_SCRIPT
chmod 0700 "$R/etc/cml/startup.sh"
log 'running --cloud-startup-script'
bash "$R/etc/cml/startup.sh"

# 3. Jobs run as runner, who can read no credential.
job_user='runner'
if ! id -u "$job_user" > /dev/null 2>&1; then
  log "creating the job user $job_user"
  useradd --create-home --shell /bin/bash --user-group "$job_user"
fi
if [ "$(id -u "$job_user")" = 0 ]; then log "the job user $job_user is root"; exit 1; fi
for group in $(id -Gn "$job_user"); do
  case "$group" in
    root|sudo|admin|wheel|docker)
      log "the job user $job_user is in group $group, which is as powerful as root"; exit 1 ;;
  esac
done
if command -v sudo > /dev/null 2>&1 && sudo -n -l -U "$job_user" 2>/dev/null | grep -q 'may run'; then
  log "the job user $job_user may use sudo"; exit 1
fi
# The metadata service serves user-data (which holds the credential): root only.
if command -v nft > /dev/null 2>&1; then
  nft -f - <<'CML_NFT'
table inet cml_metadata {
  chain output {
    type filter hook output priority 0; policy accept;
    ip daddr 169.254.169.254 meta skuid != 0 reject
    ip6 daddr fd00:ec2::254 meta skuid != 0 reject
  }
}
CML_NFT
elif command -v iptables > /dev/null 2>&1; then
  iptables -w -I OUTPUT -d 169.254.169.254 -m owner ! --uid-owner 0 -j REJECT
  if command -v ip6tables > /dev/null 2>&1; then ip6tables -w -I OUTPUT -d fd00:ec2::254 -m owner ! --uid-owner 0 -j REJECT; fi
else
  log 'neither nft nor iptables is installed: the metadata service cannot be kept from jobs'
  exit 1
fi
# cloud-init's copies of user-data hold the credential too.
rm -f "$R"/var/lib/cloud/instance/user-data.txt* "$R"/var/lib/cloud/instance/scripts/part-* \
  "$R"/var/lib/cloud/instances/*/user-data.txt* "$R"/var/lib/cloud/instances/*/scripts/part-*

# 4. cml, the same version as the launcher.
arch=$(uname -m)
url='https://releases.example.com/cml/v0.1.0/cml-{arch}-linux'
url=${url//\{arch\}/$arch}
log "installing cml from $url"
install -d -m 0755 "$R/usr/local/bin"
tmp="$R/usr/local/bin/.cml.download"
for attempt in 1 2 3 4 5; do
  if curl -fsSL --connect-timeout 20 -o "$tmp" "$url"; then break; fi
  if [ "$attempt" = 5 ]; then log "cannot download $url"; exit 1; fi
  sleep $((attempt * 3))
done
expected='abababababababababababababababababababababababababababababababab'
echo "$expected  $tmp" | sha256sum -c --quiet || { log 'cml checksum mismatch'; rm -f "$tmp"; exit 1; }
chmod 0755 "$tmp"
mv -f "$tmp" "$R/usr/local/bin/cml"

# 5. The runner, under systemd.
install -d -m 0755 "$R/var/lib/cml"
install -d -m 0700 -o "$job_user" -g "$(id -gn "$job_user")" "$R/var/lib/cml/runner"
install -d -m 0755 "$R/etc/systemd/system"
cat > "$R/etc/systemd/system/cml.service" <<'CML_UNIT'
[Unit]
Description=cml self-hosted runner
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
EnvironmentFile=/etc/cml/env
ExecStart=/usr/local/bin/cml "runner" "--labels" "cml-gpu" "--idle-timeout" "300" "--name" "odd \"name\" $$HOME 100%%" "--credentials-file" "/etc/cml/credentials"
# However cml ends (even killed or crashed), the machine goes: shutdown terminates it.
ExecStopPost=/bin/systemctl poweroff --no-block
Restart=no
KillMode=mixed
TimeoutStopSec=120

[Install]
WantedBy=multi-user.target
CML_UNIT
chmod 0644 "$R/etc/systemd/system/cml.service"
systemctl daemon-reload
systemctl enable --now cml.service
# From here on, cml.service (and its ExecStopPost) owns the machine's end.
trap - ERR EXIT HUP INT TERM
log 'cml.service started'
