"""
TSIG-signed RFC 2136 UPDATE of ACME challenge TXT: durable updates/s, ours vs BIND 9 (bench/txt_updates.py).

    python -m bench.txt_updates [--short] [--py-spy FILE]   # ~70 s (--short: 1 round of 4 s per server)

bench/tsig_updates.py's servers, users, keys, load, rounds and checks, but
each update is what lego's rfc2136 provider sends to present a DNS-01
challenge (certbot's sends the add alone): C{update delete
_acme-challenge.userN.<suffix> TXT} + C{update add} of one value, a
43-character base64url token, signed with the user's key; a user's updates
alternate between two tokens, so each one changes the zone. Ours takes them
with its default C{[acme]} (RFC 2136 on; the value is in the user's host
state, on disk before the answer); BIND's update-policy adds C{grant *
selfsub * TXT} (names at or below the key's name) to C{grant * self * A
AAAA}. Afterwards both servers must serve each user's last acknowledged
value at its challenge name, BIND's serial must have grown once per
NOERROR, and ours gets SIGKILL and its SQLite file must hold that value,
the user's address as imported.
"""

from bench.tsig_updates import main

if __name__ == "__main__":
    raise SystemExit(main("txt_updates", __doc__, txt=True))
