// Package deploy holds the files that run mqueue in production, and the tests
// that check them with the real tools:
//
//	mqueue.service        systemd unit (one node)
//	mqueue.env.example    its EnvironmentFile, /etc/mqueue/mqueue.env
//	mqueue.sysusers       sysusers.d entry for the mqueue system user
//	keepalived.conf       LVS (IPVS) virtual server + VRRP for many nodes
//	lvs-realserver.sh     VIP and ARP sysctls on each LVS-DR real server
//	haproxy.cfg           HAProxy alternative to LVS
//	README.md             how to deploy, the drain timing, sizing
//
// The package has no Go code to import: deploy_test.go validates the configs
// (haproxy -c, keepalived -t, systemd-analyze verify, bash -n, shellcheck),
// checks that their health-check timings take a node out of the pool within
// --drain-grace, and drains a node behind a real HAProxy.
package deploy
