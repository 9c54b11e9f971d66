#!/usr/bin/env bash
# Keys for a storage proxy that other machines reach (README: Scaling out): a self-signed TLS
# certificate for the proxy's host names (and localhost), its private key and a random token.
#   deploy/proxy-keys.sh DIR HOST...   writes DIR/proxy.crt, DIR/proxy.key, DIR/proxy.token
# The proxy takes all three (--tls-cert, --tls-key, --token-file); every worker takes the
# certificate and the token (SKIPNAS_PROXY_CA, SKIPNAS_PROXY_TOKEN_FILE). Keep the key and the
# token secret (written readable by their owner only); a new run replaces all three.
set -euo pipefail
dir=${1:?usage: proxy-keys.sh DIR HOST... (the names and addresses workers reach the proxy by)}
shift
names="DNS:localhost,IP:127.0.0.1"
for host in "$@"; do
  if [[ $host =~ ^[0-9.]+$ || $host == *:* ]]; then names+=",IP:$host"; else names+=",DNS:$host"; fi
done
mkdir -p "$dir"
umask 077
if ! why=$(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -days 825 -subj "/CN=skipnas storage proxy" -addext "subjectAltName=$names" \
    -keyout "$dir/proxy.key" -out "$dir/proxy.crt" 2>&1); then
  echo "$why" >&2; exit 1
fi
chmod 644 "$dir/proxy.crt"
openssl rand -hex 32 > "$dir/proxy.token"
echo "wrote $dir/proxy.crt (for $names), $dir/proxy.key and $dir/proxy.token"
