#!/usr/bin/env bash
# lvs-realserver.sh -- prepare (or undo) an mqueue node as an LVS-DR real server.
#
# In direct routing (DR) the director forwards each packet to a real server
# unchanged, still addressed to the VIP, and the real server answers the
# client directly. So every real server must
#   1. accept packets for the VIP: the VIP goes on lo as a /32, and
#   2. never answer ARP for the VIP, or clients and routers would send the
#      traffic straight to it and bypass the director:
#        arp_ignore=1   answer ARP only for addresses on the receiving interface
#                       (the VIP is on lo, so no other interface answers for it)
#        arp_announce=2 use the interface's own primary address as the ARP
#                       source, never the VIP.
# mqueue must listen on the VIP's port (8088) on all addresses (--addr :8088):
# DR cannot rewrite ports.
#
# The settings do not survive a reboot; run `start` from a unit ordered before
# mqueue.service, or put the sysctls in /etc/sysctl.d/ and the address in
# your network configuration.
#
# Usage: lvs-realserver.sh start VIP | stop VIP | status VIP
set -euo pipefail

prog=$(basename "$0")

usage() {
	cat <<USAGE
usage: $prog start VIP    put VIP/32 on lo and set arp_ignore=1, arp_announce=2
       $prog stop VIP     remove VIP from lo and restore arp_ignore=0, arp_announce=0
       $prog status VIP   show whether VIP is on lo and the ARP sysctls
Prepares this host as an LVS direct-routing real server for mqueue (see
deploy/README.md). Needs root and iproute2. Changes nothing without arguments.
USAGE
}

# valid_ipv4 succeeds when $1 is a dotted-quad IPv4 address.
valid_ipv4() {
	local ip=$1 part parts
	[[ $ip =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
	IFS=. read -r -a parts <<<"$ip"
	for part in "${parts[@]}"; do
		((10#$part <= 255)) || return 1
	done
}

# set_arp writes arp_ignore/arp_announce for "all" and "lo". The kernel uses
# the maximum of "all" and the interface's value, so "all" covers eth0 & co.
set_arp() {
	local ignore=$1 announce=$2 dev
	for dev in all lo; do
		sysctl -q -w "net.ipv4.conf.$dev.arp_ignore=$ignore"
		sysctl -q -w "net.ipv4.conf.$dev.arp_announce=$announce"
	done
}

has_vip() {
	ip -4 -o addr show dev lo | grep -q -F " $1/32 "
}

main() {
	if (($# == 0)); then
		usage >&2
		exit 2
	fi
	case $1 in
	-h | --help | help)
		usage
		exit 0
		;;
	esac
	if (($# != 2)); then
		usage >&2
		exit 2
	fi
	local cmd=$1 vip=$2
	if ! valid_ipv4 "$vip"; then
		echo "$prog: not an IPv4 address: $vip" >&2
		exit 2
	fi
	case $cmd in
	start)
		# ARP first: once the VIP is on lo, the host must already keep quiet.
		echo "$prog: arp_ignore=1 arp_announce=2 (all, lo)"
		set_arp 1 2
		if has_vip "$vip"; then
			echo "$prog: $vip/32 already on lo"
		else
			echo "$prog: adding $vip/32 to lo"
			ip addr add "$vip/32" dev lo label lo:mqvip
		fi
		;;
	stop)
		if has_vip "$vip"; then
			echo "$prog: removing $vip/32 from lo"
			ip addr del "$vip/32" dev lo
		else
			echo "$prog: $vip/32 not on lo"
		fi
		echo "$prog: arp_ignore=0 arp_announce=0 (all, lo)"
		set_arp 0 0
		;;
	status)
		if has_vip "$vip"; then
			echo "vip $vip/32 on lo: yes"
		else
			echo "vip $vip/32 on lo: no"
		fi
		sysctl net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce \
			net.ipv4.conf.lo.arp_ignore net.ipv4.conf.lo.arp_announce
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
