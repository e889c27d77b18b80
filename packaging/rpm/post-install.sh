#!/bin/sh
# kinship %post: the state directory for checkpoints and dead letters. systemd also makes it
# (StateDirectory=kinship) and fixes its owner at each start; an existing directory is left as
# the administrator set it. The unit is neither enabled nor started: the config needs the
# operator's stream first.
set -e
if [ ! -d /var/lib/kinship ]; then
    install -d -o kinship -g kinship -m 0750 /var/lib/kinship
fi
