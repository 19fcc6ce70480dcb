"""
What every benchmark shares: processes stopped by PID, free ports, the user
store, the server launcher, the CPU meter and percentiles, the drivers of
the real tools (dnsperf, wrk, BIND named, py-spy) and the JSON record.
"""
