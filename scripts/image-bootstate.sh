# Boot-state partition, busybox sh implementation (sourced by the initramfs /init and by tests).
# Same format and rules as eden/image/bootstate.py (docs/reference-image.md, spec §3):
# sector 0 = primary record, sector 1 = backup; each is 512 bytes of ASCII, NUL-padded:
#   EDEN-BOOTSTATE 1 / A prio tries successful / B prio tries successful / sha256 <of the 3 lines>
# bootstate_next DEV: pick the bootable slot (tries>0 || successful) with the highest priority,
# A on a tie, decrement its tries, write the record back (backup, then primary) and print
# "SLOT PRIO TRIES SUCCESSFUL" (the values after the decrement). Exit 1 if no slot is bootable,
# 2 if no valid record exists.

# bootstate_record DEV SECTOR: print the record's three body lines when its checksum holds.
bootstate_record() {
    _rec=$(dd if="$1" bs=512 skip="$2" count=1 2>/dev/null | tr -d '\000')
    _body=$(printf '%s\n' "$_rec" | head -n 3)
    _sum=$(printf '%s\n' "$_rec" | sed -n '4p')
    [ "$(printf '%s\n' "$_rec" | sed -n '1p')" = "EDEN-BOOTSTATE 1" ] || return 1
    [ "$(printf '%s\n' "$_rec" | wc -l)" -eq 4 ] || return 1
    _want=$(printf '%s\n' "$_body" | sha256sum | cut -d' ' -f1)
    [ "$_sum" = "sha256 $_want" ] || return 1
    printf '%s\n' "$_body"
}

# bootstate_read DEV: set A_PRIO A_TRIES A_OK B_PRIO B_TRIES B_OK from the primary, else the backup.
bootstate_read() {
    _body=$(bootstate_record "$1" 0) || _body=$(bootstate_record "$1" 1) || return 2
    set -- $(printf '%s\n' "$_body" | sed -n '2p;3p')
    [ "$#" -eq 8 ] && [ "$1" = A ] && [ "$5" = B ] || return 2
    for _v in "$2" "$3" "$4" "$6" "$7" "$8"; do
        case "$_v" in ''|*[!0-9]*) return 2 ;; esac
    done
    A_PRIO=$2 A_TRIES=$3 A_OK=$4 B_PRIO=$6 B_TRIES=$7 B_OK=$8
}

# bootstate_write DEV: write A_* / B_* as backup then primary, each synced.
bootstate_write() {
    _body=$(printf 'EDEN-BOOTSTATE 1\nA %d %d %d\nB %d %d %d' \
        "$A_PRIO" "$A_TRIES" "$A_OK" "$B_PRIO" "$B_TRIES" "$B_OK")
    _want=$(printf '%s\n' "$_body" | sha256sum | cut -d' ' -f1)
    _tmp=${TMPDIR:-/tmp}/bootstate.$$
    printf '%s\nsha256 %s\n' "$_body" "$_want" > "$_tmp"
    dd if="$_tmp" of="$1" bs=512 seek=1 count=1 conv=notrunc,sync,fsync 2>/dev/null &&
        dd if="$_tmp" of="$1" bs=512 seek=0 count=1 conv=notrunc,sync,fsync 2>/dev/null
    _rc=$?
    rm -f "$_tmp"
    return $_rc
}

# bootstate_next DEV: gptprio.next (see the header).
bootstate_next() {
    bootstate_read "$1" || return 2
    _best=
    if [ "$A_TRIES" -gt 0 ] || [ "$A_OK" -eq 1 ]; then _best=A; fi
    if [ "$B_TRIES" -gt 0 ] || [ "$B_OK" -eq 1 ]; then
        if [ -z "$_best" ] || [ "$B_PRIO" -gt "$A_PRIO" ]; then _best=B; fi
    fi
    [ -n "$_best" ] || return 1
    if [ "$_best" = A ] && [ "$A_TRIES" -gt 0 ]; then A_TRIES=$((A_TRIES - 1)); fi
    if [ "$_best" = B ] && [ "$B_TRIES" -gt 0 ]; then B_TRIES=$((B_TRIES - 1)); fi
    bootstate_write "$1" || return 2
    if [ "$_best" = A ]; then echo "A $A_PRIO $A_TRIES $A_OK"; else echo "B $B_PRIO $B_TRIES $B_OK"; fi
}
