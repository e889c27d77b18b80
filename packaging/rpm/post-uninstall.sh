#!/bin/sh
# kinship %postun: after an upgrade, restart the service if it was running; a new install is
# neither enabled nor started (the config needs the operator's stream first). The state
# directory and the kinship user are left in place on removal.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart kinship.service >/dev/null 2>&1 || :
    fi
fi
exit 0
