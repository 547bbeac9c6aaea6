#!/usr/bin/env bash
# iotc (the CLI): usage errors and their exit code, pub/sub against a
# mosquitto broker on plain TCP and against iotsim over mTLS, the exit codes
# of each connection failure: refused (3), TLS (4), timeout (5), cannot
# connect (6), iotc shadow against iotsim's shadow service (rejected: 7), and
# iotc provision against iotsim's fleet provisioning service (a claim
# certificate limited to the provisioning topics; AWS's keys or a CSR; the
# new credentials then connect; an unknown template is rejected: 7).
# Every broker runs on a port the OS picked.
set -uo pipefail
B=${B:-build}
iotc="$B/bin/iotc"
iotsim="$B/bin/iotsim"
tmp=$(mktemp -d /tmp/iotc-test.XXXXXX)
pids=()
passed=0
failed=0

cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT

# shellcheck source=lib.bash
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# A subscriber ($2) said it is subscribed in its stderr ($1), or is gone.
sub_ready() { grep -qs 'subscribed to' "$1" || ! kill -0 "$2" 2>/dev/null; }
subscribed() { wait_until "the subscription" 100 sub_ready "$1" "$2" && grep -qs 'subscribed to' "$1"; }


[ -x "$iotc" ] || { echo "iotc.sh: $iotc not built" >&2; exit 1; }

# ---- usage: exit 2, and the message names the flag -------------------------------
expect "no command" 2 'usage: iotc' -- "$iotc"
expect "unknown command" 2 'frob' -- "$iotc" frob
expect "unknown flag" 2 '^iotc: .*--bogus' -- "$iotc" pub --bogus
expect "missing value" 2 '^iotc: --port' -- "$iotc" pub --endpoint h --port
expect "bad number" 2 '^iotc: --count' -- "$iotc" sub --endpoint h --count many
expect "QoS 2 refused" 2 '^iotc: --qos' -- "$iotc" pub --endpoint h --qos 2
expect "port out of range" 2 '^iotc: --port' -- "$iotc" pub --endpoint h --port 70000
expect "cert without key" 2 '^iotc: --cert needs --key' -- "$iotc" pub --endpoint h --cert c.pem
expect "signing without region" 2 '^iotc: --signing needs --region' -- "$iotc" sub --endpoint h --signing
expect "no endpoint" 2 '^iotc: --endpoint' -- "$iotc" pub
expect "--help" 0 'usage: iotc pub.sub' -- "$iotc" --help
expect "shadow without an operation" 2 'want get, update, delete or delta' -- "$iotc" shadow
expect "shadow with a bad operation" 2 'not frob' -- "$iotc" shadow frob --endpoint h
expect "shadow update without --state" 2 'needs --state' -- "$iotc" shadow update --endpoint h --thing t
expect "shadow get with --state" 2 '--state is for iotc shadow update' -- "$iotc" shadow get --endpoint h --thing t --state '{}'
expect "shadow without a thing" 2 'needs --thing' -- "$iotc" shadow get --endpoint h
expect "--thing is for shadow" 2 'are for iotc shadow' -- "$iotc" pub --endpoint h --thing t
expect "shadow --help" 0 '--shadow_name' -- "$iotc" shadow --help
expect "pub --help" 0 '--ca_file' -- "$iotc" pub --help
expect "provision without --template" 2 'needs --template' -- "$iotc" provision --endpoint h
expect "provision with a bad template name" 2 '^iotc: --template: .*\[0-9A-Za-z_-\]' -- \
    "$iotc" provision --endpoint h --template 'a/b'
expect "provision with a --param that is not K=V" 2 '^iotc: --param: want KEY=VALUE' -- \
    "$iotc" provision --endpoint h --template T --param novalue
expect "provision with a --param twice" 2 'SerialNumber given twice' -- \
    "$iotc" provision --endpoint h --template T --param SerialNumber=1 --param SerialNumber=2
expect "--template is for provision" 2 'are for iotc provision' -- "$iotc" pub --endpoint h --template T
expect "provision --help" 0 '--template NAME' -- "$iotc" provision --help

# ---- nothing listening: exit 6 ----------------------------------------------------
dead=$(free_port)
expect "connection refused by the OS" 6 '^iotc: cannot connect' -- \
    "$iotc" pub --no-tls --endpoint 127.0.0.1 --port "$dead" --timeout 5

# ---- a peer that accepts TCP and never answers CONNECT: exit 5 ----------------------
silent=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); time.sleep(120)' "$silent" &
pids+=($!)
if wait_until "the silent listener" 50 port_open "$silent"; then
    expect "no CONNACK: timeout" 5 '^iotc: time' -- \
        "$iotc" pub --no-tls --endpoint 127.0.0.1 --port "$silent" --timeout 1
else
    fail "no CONNACK: the silent listener did not start"
fi

# ---- mosquitto, plain TCP ---------------------------------------------------------
if command -v mosquitto >/dev/null; then
    mport=$(free_port)
    rport=$(free_port)
    cat >"$tmp/mosquitto.conf" <<EOF
per_listener_settings true
persistence false
listener $mport 127.0.0.1
allow_anonymous true
listener $rport 127.0.0.1
allow_anonymous false
EOF
    mosquitto -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
    pids+=($!)
    if wait_until "mosquitto" 100 port_open "$mport" && wait_until "mosquitto" 50 port_open "$rport"; then
        common=(--no-tls --endpoint 127.0.0.1 --port "$mport" --topic iotc/test/plain --timeout 10)
        timeout 60 "$iotc" sub "${common[@]}" --count 3 --verbose >"$tmp/sub.out" 2>"$tmp/sub.err" &
        sub=$!
        pids+=($sub)
        if subscribed "$tmp/sub.err" "$sub"; then
            expect "mosquitto: pub --count 3 --qos 1" 0 '' -- \
                "$iotc" pub "${common[@]}" --count 3 --qos 1 --message "hello plain"
            wait "$sub"
            rc=$?
            want=$'iotc/test/plain hello plain\niotc/test/plain hello plain\niotc/test/plain hello plain'
            if [ "$rc" -eq 0 ] && [ "$(cat "$tmp/sub.out")" = "$want" ]; then
                pass "mosquitto: sub --count 3 printed three messages and exited 0"
            else
                fail "mosquitto: sub exit $rc, stdout: $(cat "$tmp/sub.out"), stderr: $(cat "$tmp/sub.err")"
            fi
        else
            fail "mosquitto: sub never subscribed: $(cat "$tmp/sub.err")"
        fi

        # sub with no --count runs until SIGTERM, then disconnects and exits 0.
        "$iotc" sub "${common[@]}" --verbose >/dev/null 2>"$tmp/term.err" &
        sub=$!
        pids+=($sub)
        if subscribed "$tmp/term.err" "$sub"; then
            kill -TERM "$sub"
            if wait_until "sub to stop" 100 bash -c "! kill -0 $sub 2>/dev/null"; then
                wait "$sub"
                rc=$?
                [ "$rc" -eq 0 ] && pass "mosquitto: SIGTERM stops sub with exit 0" ||
                    fail "mosquitto: sub after SIGTERM: exit $rc: $(cat "$tmp/term.err")"
            else
                fail "mosquitto: sub still running 10 s after SIGTERM"
            fi
        else
            fail "mosquitto: sub (no count) never subscribed: $(cat "$tmp/term.err")"
        fi

        # CONNACK "not authorized" from the listener without anonymous access: exit 3.
        expect "mosquitto: refused CONNECT" 3 '^iotc: connection refused.*CONNACK return code 5' -- \
            "$iotc" pub --no-tls --endpoint 127.0.0.1 --port "$rport" --timeout 10
    else
        fail "mosquitto did not start: $(cat "$tmp/mosquitto.log")"
    fi
else
    fail "mosquitto is not installed (ci/install-deps.sh installs it)"
fi

# ---- mosquitto: TLS with a certificate for another name, and plain WebSocket --------
if command -v mosquitto >/dev/null; then
    t="$tmp/tls"
    mkdir -p "$t"
    chmod 755 "$tmp" "$t" # mosquitto started as root reads its files as user mosquitto
    if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=test-ca \
        -keyout "$t/ca.key" -out "$t/ca.crt" >/dev/null 2>&1 &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=other.example \
            -keyout "$t/srv.key" -out "$t/srv.csr" >/dev/null 2>&1 &&
        printf 'subjectAltName=DNS:other.example\n' >"$t/ext" &&
        openssl x509 -req -in "$t/srv.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial -days 1 \
            -extfile "$t/ext" -out "$t/srv.crt" >/dev/null 2>&1; then
        chmod 644 "$t"/*
        tport=$(free_port)
        wport=$(free_port)
        cat >"$t/mosquitto.conf" <<EOF
per_listener_settings true
persistence false
listener $tport 127.0.0.1
allow_anonymous true
cafile $t/ca.crt
certfile $t/srv.crt
keyfile $t/srv.key
listener $wport 127.0.0.1
protocol websockets
allow_anonymous true
EOF
        mosquitto -c "$t/mosquitto.conf" >"$t/mosquitto.log" 2>&1 &
        pids+=($!)
        if wait_until "mosquitto (TLS)" 100 port_open "$tport" && wait_until "mosquitto (ws)" 50 port_open "$wport"; then
            expect "mosquitto: certificate for another name: exit 4, hostname mismatch" 4 \
                '^iotc: TLS failure with localhost: .*hostname mismatch' -- \
                "$iotc" pub --endpoint localhost --port "$tport" --ca_file "$t/ca.crt" --timeout 10
            ws=(--ws --no-tls --endpoint 127.0.0.1 --port "$wport" --topic iotc/test/ws --timeout 10)
            timeout 60 "$iotc" sub "${ws[@]}" --count 1 --verbose >"$tmp/ws.out" 2>"$tmp/ws.err" &
            sub=$!
            pids+=($sub)
            if subscribed "$tmp/ws.err" "$sub"; then
                expect "mosquitto: pub --ws" 0 '' -- "$iotc" pub "${ws[@]}" --message "hello ws"
                wait "$sub"
                rc=$?
                [ "$rc" -eq 0 ] && [ "$(cat "$tmp/ws.out")" = "iotc/test/ws hello ws" ] &&
                    pass "mosquitto: sub --ws received the message" ||
                    fail "mosquitto: sub --ws exit $rc, stdout: $(cat "$tmp/ws.out"), stderr: $(cat "$tmp/ws.err")"
            else
                fail "mosquitto: sub --ws never subscribed: $(cat "$tmp/ws.err")"
            fi
        else
            fail "mosquitto (TLS, ws) did not start: $(cat "$t/mosquitto.log")"
        fi
    else
        fail "openssl could not make the TLS test certificates"
    fi
fi

# ---- iotsim, mTLS -----------------------------------------------------------------
if [ -x "$iotsim" ]; then
    sim="$tmp/sim"
    "$iotsim" --ports auto --state-dir "$sim" >"$tmp/iotsim.log" 2>&1 &
    pids+=($!)
    if wait_until "iotsim's endpoint.json" 300 test -f "$sim/endpoint.json"; then
        timeout 60 "$iotc" sub --sim "$sim" --topic iotc/test/mtls --count 1 --verbose \
            >"$tmp/simsub.out" 2>"$tmp/simsub.err" &
        sub=$!
        pids+=($sub)
        if subscribed "$tmp/simsub.err" "$sub"; then
            expect "iotsim: pub --sim over mTLS" 0 '' -- \
                "$iotc" pub --sim "$sim" --topic iotc/test/mtls --message "hello mTLS"
            wait "$sub"
            rc=$?
            if [ "$rc" -eq 0 ] && [ "$(cat "$tmp/simsub.out")" = "iotc/test/mtls hello mTLS" ]; then
                pass "iotsim: sub --sim received the message over mTLS"
            else
                fail "iotsim: sub exit $rc, stdout: $(cat "$tmp/simsub.out"), stderr: $(cat "$tmp/simsub.err")"
            fi
        else
            fail "iotsim: sub never subscribed: $(cat "$tmp/simsub.err")"
        fi

        # A CA that did not sign iotsim's server certificate: exit 4 and the reason.
        if openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=other-ca \
            -keyout "$tmp/other.key" -out "$tmp/other.crt" >/dev/null 2>&1; then
            expect "iotsim: wrong CA gives a TLS failure with its reason" 4 '^iotc: TLS failure .*: .*(certificate|verif)' -- \
                "$iotc" pub --sim "$sim" --ca_file "$tmp/other.crt" --timeout 10
        else
            fail "openssl req could not make a CA"
        fi

        # The device's identity as a PKCS#12 bundle (iotc_mtls_with_pkcs12),
        # and the same bundle with a wrong password.
        dev_crt=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['cert_file'])" "$sim/endpoint.json")
        dev_key=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['key_file'])" "$sim/endpoint.json")
        if openssl pkcs12 -export -in "$dev_crt" -inkey "$dev_key" -passout pass:sekrit \
            -out "$tmp/dev.p12" >/dev/null 2>&1; then
            expect "iotsim: pub with --pkcs12 (mTLS from a PKCS#12 bundle)" 0 '' -- \
                "$iotc" pub --sim "$sim" --pkcs12 "$tmp/dev.p12" --pkcs12_password sekrit --timeout 10
            expect "iotsim: --pkcs12 with a wrong password says so" 1 'wrong password' -- \
                "$iotc" pub --sim "$sim" --pkcs12 "$tmp/dev.p12" --pkcs12_password nope --timeout 10
        else
            fail "openssl pkcs12 could not make a bundle"
        fi

        # iotc shadow against iotsim's shadow service: libiotc's shadow client
        # (iotc/shadow.h) end to end.  The thing defaults to the device's.
        thing=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['thing_name'])" "$sim/endpoint.json")
        expect "shadow: get of a missing shadow is rejected (7) with AWS's 404" 7 \
            "\"code\":404.*No shadow exists with name: '$thing'" -- "$iotc" shadow get --sim "$sim" --timeout 10
        "$iotc" shadow delta --sim "$sim" --shadow_name lamp --count 1 --client_id shadow-watch --timeout 10 \
            >"$tmp/delta.out" 2>"$tmp/delta.err" &
        watch=$!
        pids+=("$watch")
        if wait_until "the delta subscription" 100 grep -qs 'subscribed to the delta' "$tmp/delta.err"; then
            expect "shadow: update of a named shadow prints update/accepted (version 1)" 0 '"version":1' -- \
                "$iotc" shadow update --sim "$sim" --shadow_name lamp --timeout 10 \
                --state '{"state":{"desired":{"on":true},"reported":{"on":false}}}'
            if wait_until "the delta" 100 grep -qs '"state":{"on":true}' "$tmp/delta.out" && wait "$watch"; then
                pass "shadow: delta --count 1 printed the delta and exited 0"
            else
                fail "shadow: no delta: $(cat "$tmp/delta.out" "$tmp/delta.err")"
            fi
        else
            fail "shadow delta never subscribed: $(cat "$tmp/delta.err")"
        fi
        expect "shadow: get shows desired, reported and the delta" 0 '"delta":\{"on":true\}' -- \
            "$iotc" shadow get --sim "$sim" --shadow_name lamp --timeout 10
        expect "shadow: a stale version is rejected with 409" 7 'rejected: 409 Version conflict' -- \
            "$iotc" shadow update --sim "$sim" --shadow_name lamp --state '{"state":{"reported":{"on":true}},"version":7}'
        expect "shadow: an update without state is refused before sending" 2 'state' -- \
            "$iotc" shadow update --sim "$sim" --shadow_name lamp --state '{"reported":{"on":true}}'
        expect "shadow: delete prints the deleted version" 0 '"version":1' -- \
            "$iotc" shadow delete --sim "$sim" --shadow_name lamp --timeout 10
        expect "shadow: gone after delete" 7 "No shadow exists with name: 'lamp'" -- \
            "$iotc" shadow get --sim "$sim" --shadow_name lamp --timeout 10
    else
        fail "iotsim did not write endpoint.json: $(cat "$tmp/iotsim.log")"
    fi

    # iotc provision against a second iotsim with a provisioning template and
    # a claim device whose policy allows only the provisioning topics (as AWS
    # documents the claim certificate's, aws-services.md §2.1): libiotc's
    # identity client (iotc/identity.h) end to end.
    psim="$tmp/psim"
    arn='arn:aws:iot:us-east-1:123456789012'
    cat >"$tmp/prov.json" <<EOF
{"policies": {"claim": {"Version": "2012-10-17", "Statement": [
   {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
   {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
    "Resource": ["$arn:topic/\$aws/certificates/create/*", "$arn:topic/\$aws/certificates/create-from-csr/*",
                 "$arn:topic/\$aws/provisioning-templates/DevTpl/provision/*"]},
   {"Effect": "Allow", "Action": "iot:Subscribe",
    "Resource": ["$arn:topicfilter/\$aws/certificates/create/*", "$arn:topicfilter/\$aws/certificates/create-from-csr/*",
                 "$arn:topicfilter/\$aws/provisioning-templates/DevTpl/provision/*"]}]}},
 "things": [{"name": "claimer", "policies": ["claim"]}],
 "provisioning_templates": {"DevTpl": {
   "Parameters": {"SerialNumber": {"Type": "String"}, "AWS::IoT::Certificate::Id": {"Type": "String"}},
   "Resources": {
     "thing": {"Type": "AWS::IoT::Thing",
               "Properties": {"ThingName": {"Fn::Join": ["", ["Dev_", {"Ref": "SerialNumber"}]]}}},
     "certificate": {"Type": "AWS::IoT::Certificate",
                     "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
     "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "allow-all"}}},
   "DeviceConfiguration": {"Serial": {"Ref": "SerialNumber"}, "Fallback": "https://www.example.com/test-site"}}}}
EOF
    "$iotsim" --ports auto --state-dir "$psim" --config "$tmp/prov.json" >"$tmp/psim.log" 2>&1 &
    pids+=($!)
    if wait_until "the provisioning iotsim's endpoint.json" 300 test -f "$psim/endpoint.json"; then
        claim=(--sim "$psim" --cert "$psim/devices/claimer.crt" --key "$psim/devices/claimer.key" --timeout 10)
        # summary_is FILE SERIAL: the summary iotc provision printed.
        summary_is() {
            python3 -c 'import json, re, sys
s = json.load(open(sys.argv[1]))
serial = sys.argv[2]
assert set(s) == {"certificateId", "thingName", "deviceConfiguration"}, s
assert re.fullmatch(r"[0-9a-f]{64}", s["certificateId"]), s
assert s["thingName"] == "Dev_" + serial, s
assert s["deviceConfiguration"] == {"Serial": serial, "Fallback": "https://www.example.com/test-site"}, s' "$1" "$2"
        }
        timeout 60 "$iotc" provision "${claim[@]}" --template DevTpl --param SerialNumber=42 --out "$tmp/prov" \
            >"$tmp/prov.out" 2>"$tmp/prov.err"
        rc=$?
        if [ "$rc" -eq 0 ] && summary_is "$tmp/prov.out" 42 2>"$tmp/prov.py"; then
            pass "provision: the claim certificate gets a certificate and thing Dev_42, and the summary says so"
        else
            fail "provision: exit $rc: $(cat "$tmp/prov.out" "$tmp/prov.err" "$tmp/prov.py")"
        fi
        kmode=$(stat -c %a "$tmp/prov/private.pem.key" 2>/dev/null)
        if [ "$kmode" = 600 ] && grep -q 'BEGIN CERTIFICATE' "$tmp/prov/certificate.pem.crt" &&
            grep -q 'PRIVATE KEY' "$tmp/prov/private.pem.key"; then
            pass "provision: certificate.pem.crt and private.pem.key (mode 600) written"
        else
            fail "provision: the files: key mode '$kmode': $(ls -l "$tmp/prov" 2>&1)"
        fi
        expect "provision: the new credentials connect as Dev_42 and publish" 0 '' -- \
            "$iotc" pub --sim "$psim" --cert "$tmp/prov/certificate.pem.crt" --key "$tmp/prov/private.pem.key" \
            --client_id Dev_42 --topic dev/42 --message provisioned --timeout 10
        expect "provision: never over existing credentials" 1 'already exists' -- \
            "$iotc" provision "${claim[@]}" --template DevTpl --param SerialNumber=44 --out "$tmp/prov"

        # CreateCertificateFromCsr: the key stays here; only the certificate is written.
        if openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=Dev_43 \
            -keyout "$tmp/dev43.key" -out "$tmp/dev43.csr" >/dev/null 2>&1; then
            timeout 60 "$iotc" provision "${claim[@]}" --template DevTpl --csr "$tmp/dev43.csr" \
                --param SerialNumber=43 --out "$tmp/prov-csr" >"$tmp/csr.out" 2>"$tmp/csr.err"
            rc=$?
            if [ "$rc" -eq 0 ] && summary_is "$tmp/csr.out" 43 2>"$tmp/csr.py" &&
                [ -f "$tmp/prov-csr/certificate.pem.crt" ] && [ ! -e "$tmp/prov-csr/private.pem.key" ]; then
                pass "provision --csr: a certificate for our own key, thing Dev_43, no private.pem.key"
            else
                fail "provision --csr: exit $rc: $(cat "$tmp/csr.out" "$tmp/csr.err" "$tmp/csr.py"; ls "$tmp/prov-csr")"
            fi
            expect "provision --csr: that certificate and the CSR's key connect as Dev_43" 0 '' -- \
                "$iotc" pub --sim "$psim" --cert "$tmp/prov-csr/certificate.pem.crt" --key "$tmp/dev43.key" \
                --client_id Dev_43 --topic dev/43 --timeout 10
        else
            fail "openssl req could not make a CSR"
        fi

        # An unknown template (asked by the default device, whose policy lets
        # it subscribe there): RegisterThing rejected with AWS's error
        # document, and the files of a certificate that will never be active
        # removed.
        expect "provision: an unknown template is rejected (7) with the error document" 7 \
            '"statusCode":404.*"errorCode":"ResourceNotFound"' -- \
            "$iotc" provision --sim "$psim" --template NoSuchTpl --param SerialNumber=1 --out "$tmp/prov-none"
        if [ -d "$tmp/prov-none" ] && [ -z "$(ls -A "$tmp/prov-none")" ]; then
            pass "provision: a rejected RegisterThing leaves no files behind"
        else
            fail "provision: after a rejection: $(ls -l "$tmp/prov-none" 2>&1)"
        fi
    else
        fail "the provisioning iotsim did not write endpoint.json: $(cat "$tmp/psim.log")"
    fi
else
    fail "$iotsim not built (make $iotsim)"
fi

echo "iotc test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
