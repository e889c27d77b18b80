#!/bin/sh
# kinship %preun: on removal (not on upgrade), stop and disable the service.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now kinship.service >/dev/null 2>&1 || :
fi
exit 0
