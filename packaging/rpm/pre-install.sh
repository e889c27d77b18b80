#!/bin/sh
# kinship %pre: the service user, before the files it owns (/var/lib/kinship, the config's
# group) are installed. Every step is a no-op when it was done before; a step that fails
# stops the install rather than leave files owned by root.
set -e
getent group kinship >/dev/null || groupadd --system kinship
getent passwd kinship >/dev/null \
    || useradd --system --gid kinship --home-dir /var/lib/kinship --no-create-home \
        --shell /sbin/nologin kinship
# adm may read most of /var/log.
if getent group adm >/dev/null; then
    usermod --append --groups adm kinship
fi
