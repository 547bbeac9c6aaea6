"""The validator's judgments: iotsim's event log + the adapter's events -> verdicts.

judge(run) returns {judgment id: {"verdict": PASS|WARN|FAIL|N/A, "reason": one line,
"evidence": [strings]}}.  `run` is a validate-client ClientRun after its script:
run.log() (event log records), run.events (adapter events, "_wall" = receipt),
run.marks (label -> wall ms), run.cid, run.filters, run.t0.  What each judgment
means, and the reference behind it: README.md beside this file.
"""
INTRUDER_KA = 1111


def J(verdict, reason, evidence=None):
    return {"verdict": verdict, "reason": reason, "evidence": evidence or []}


def judge(run):
    log = run.log()
    t0 = run.t0
    cid = run.cid

    def ts(ms):
        return "+%.2fs" % ((ms - t0) / 1000.0)

    # The client's connections: CONNECTs with its id, except the intruder's (marked keep-alive).
    mine, related, intruder = set(), set(), set()
    connects = []  # (wall, rec) of the client's own CONNECTs
    for r in log:
        if r.get("kind") == "in" and r.get("type") == "CONNECT":
            c = str(r.get("client_id", ""))
            if c == cid and r.get("keepalive") == INTRUDER_KA:
                intruder.add(r["conn"])
            elif c == cid:
                mine.add(r["conn"])
                connects.append(r)
            if c.startswith(cid) and r.get("keepalive") != INTRUDER_KA:
                related.add(r["conn"])
    ins = [r for r in log if r.get("kind") == "in" and r.get("conn") in related]
    outs = [r for r in log if r.get("kind") == "out" and r.get("conn") in mine]
    decs = [r for r in log if r.get("kind") == "decision" and r.get("conn") in related]
    marks = run.marks
    res = {}

    def connects_between(a, b=None):
        return [r for r in connects if r["wall"] >= a and (b is None or r["wall"] < b)]

    def connack_ok(conn):
        return any(o.get("type") == "CONNACK" and o.get("conn") == conn and o.get("reason") == 0 for o in outs)

    def refused(conn):
        return [d for d in decs if d.get("conn") == conn and d.get("what") == "connect_refused"]

    def attempt_str(r):
        rf = refused(r["conn"])
        return "%s CONNECT conn %s%s" % (ts(r["wall"]), r["conn"],
                                         " refused (%s)" % rf[0].get("detail") if rf else
                                         (" accepted" if connack_ok(r["conn"]) else " (no CONNACK)"))

    # ---- qos2-retain ----
    bad = []
    npub = nsub = 0
    for r in ins:
        if r.get("type") == "PUBLISH":
            npub += 1
            if r.get("qos") == 2 or r.get("retain"):
                bad.append("%s PUBLISH %s qos %s retain %s" % (ts(r["wall"]), r.get("topic"), r.get("qos"),
                                                               r.get("retain")))
        elif r.get("type") == "SUBSCRIBE":
            nsub += 1
            for f in r.get("filters", []):
                if f.get("qos") == 2:
                    bad.append("%s SUBSCRIBE %s qos 2" % (ts(r["wall"]), f.get("filter")))
        elif r.get("type") == "CONNECT" and r.get("will"):
            if r.get("will_qos") == 2 or r.get("will_retain"):
                bad.append("%s CONNECT with a Will qos %s retain %s" % (ts(r["wall"]), r.get("will_qos"),
                                                                       r.get("will_retain")))
    for d in decs:
        if d.get("what") in ("qos2_publish_dropped", "qos2_subscribe_ignored"):
            bad.append("%s broker: %s" % (ts(d["wall"]), d.get("what")))
    res["qos2-retain"] = (J("FAIL", "%d QoS 2 or retain request(s): AWS drops QoS 2, answers no SUBACK, "
                               "and (classic) disconnects on retain" % len(bad), bad) if bad else
                          J("PASS", "%d PUBLISH, %d SUBSCRIBE: none with QoS 2 or retain" % (npub, nsub)))

    # ---- keepalive ----
    kas = sorted({(str(r.get("client_id")), r.get("keepalive")) for r in ins if r.get("type") == "CONNECT"})
    ev = ["CONNECT %s keepalive %s" % k for k in kas]
    worst = None
    for _, ka in kas:
        if ka == 0 or ka > 1200:
            worst = "FAIL"
        elif ka < 30 and worst is None:
            worst = "WARN"
    if not kas:
        res["keepalive"] = J("N/A", "no CONNECT seen")
    elif worst == "FAIL":
        res["keepalive"] = J("FAIL", "keep-alive 0 or > 1200 s: AWS uses 1200 s and closes after 1.5 x 1200 s of "
                                     "silence, before this client would ping", ev)
    elif worst == "WARN":
        res["keepalive"] = J("WARN", "keep-alive under 30 s: AWS treats it as 30 s (the client pings more "
                                     "than needed, harmless)", ev)
    else:
        res["keepalive"] = J("PASS", "keep-alive %s s, within 30..1200" % ",".join(
            str(k) for k in sorted({k for _, k in kas})), ev)

    # ---- reconnect ----
    d1 = marks.get("drop1")
    gave_up = [e for e in run.events if e.get("ev") == "gave_up"]
    if d1 is None:
        res["reconnect"] = J("N/A", "the drop phase did not run")
    else:
        after = connects_between(d1)
        if after:
            res["reconnect"] = J("PASS", "reconnected %.2f s after the broker dropped it" %
                                 ((after[0]["wall"] - d1) / 1000.0), [attempt_str(after[0])])
        else:
            why = ("the client stopped: %s" % gave_up[0].get("reason")) if gave_up else \
                "no CONNECT within 12 s of the drop"
            res["reconnect"] = J("FAIL", "does not reconnect after the broker closes the connection (AWS does "
                                         "that on takeover, throttling, deploys): %s" % why,
                                 ["%s drop (control API)" % ts(d1)] +
                                 ["%s adapter: %s %s" % (ts(e["_wall"]), e.get("ev"), e.get("reason", ""))
                                  for e in run.events if e["_wall"] >= d1 and e.get("ev") in
                                  ("disconnected", "gave_up", "error")][:3])

    # ---- backoff (refused connects after drop2) ----
    d2 = marks.get("drop2")
    gap_b1 = None
    if d1 is not None and connects_between(d1):
        gap_b1 = connects_between(d1)[0]["wall"] - d1
    growth = None
    c2 = []
    if d2 is None:
        res["backoff"] = J("N/A", "the refused-connects phase did not run (the client did not reconnect)")
    else:
        end2 = marks.get("drop2.connected", marks.get("drop3", d2 + 60000)) + 1
        c2 = connects_between(d2, end2)
        ev = ["%s drop, connects refused for %d s" % (ts(d2), 6)] + [attempt_str(r) for r in c2]
        pts = [d2] + [r["wall"] for r in c2]
        gaps = [(pts[i + 1] - pts[i]) / 1000.0 for i in range(len(pts) - 1)]
        between = gaps[1:]  # attempt to attempt
        gs = " ".join("%.2f" % g for g in gaps)
        if not c2:
            res["backoff"] = J("N/A", "no reconnect attempt seen", ev)
        elif any(g < 0.95 for g in between):
            res["backoff"] = J("FAIL", "attempts less than 1 s apart (waits %s s): AWS allows 1 CONNECT/s per "
                                       "client id" % gs, ev)
        elif len(between) < 2 and len(c2) < 2:
            res["backoff"] = J("N/A", "a single attempt after %.2f s: the first retry came after the refusal "
                                      "ended, so growth is not observable" % gaps[0], ev)
        else:
            grows = all(b >= a * 0.9 for a, b in zip(between, between[1:])) and \
                (len(between) >= 2 and between[-1] > between[0] * 1.3 or
                 len(between) == 1 and between[0] > gaps[0] * 1.3)
            if grows:
                growth = between
                res["backoff"] = J("PASS", "waits grow: %s s (drop to 1st attempt, then between attempts)" % gs, ev)
            else:
                res["backoff"] = J("WARN", "waits do not grow: %s s (a fixed interval: no exponential backoff; "
                                           "in a fleet-wide outage every device retries in step)" % gs, ev)

    # ---- backoff-reset (drop3 after STABLE) ----
    d3 = marks.get("drop3")
    if d3 is None or not connects_between(d3):
        res["backoff-reset"] = J("N/A", "the stable-then-drop phase did not run" if d3 is None else
                                 "no reconnect after the third drop")
    elif growth is None:
        res["backoff-reset"] = J("N/A", "the backoff did not grow, so there is nothing to reset")
    else:
        g3 = (connects_between(d3)[0]["wall"] - d3) / 1000.0
        up = (d3 - marks["drop2.connected"]) / 1000.0
        first = gap_b1 / 1000.0 if gap_b1 is not None else g3
        last = growth[-1]
        ev = ["1st drop: reconnect after %.2f s" % first,
              "refused: waits grew to %.2f s" % last,
              "up %.1f s, dropped at %s, reconnect after %.2f s" % (up, ts(d3), g3)]
        # The next loss (the takeover, about 1 s after that reconnect) shows
        # whether the escalation was reset too, or only the first attempt.
        tk0 = marks.get("takeover")
        kick = sorted(d["wall"] for d in decs if d.get("conn") in mine and d.get("what") == "close"
                      and d.get("reason") == "DUPLICATE_CLIENTID" and tk0 is not None and d["wall"] >= tk0)
        w2, lower = None, False
        if kick:
            nxt = [r for r in connects if r["wall"] > kick[0]]
            if nxt:
                w2 = (nxt[0]["wall"] - kick[0]) / 1000.0
            else:
                w2, lower = (marks.get("bye", marks.get("takeover.end", kick[0])) - kick[0]) / 1000.0, True
            ev.append("next loss (taken over at %s): next CONNECT %s%.2f s later" % (ts(kick[0]), ">= " if lower
                                                                                    else "", w2))
        if (g3 <= max(first * 1.5, first + 0.5) or g3 < last * 0.6) and w2 is not None and \
                w2 >= max(last * 0.9, first * 2 + 1):
            res["backoff-reset"] = J("WARN", "after %.0f s up the first reconnect was at once (%.2f s), but the "
                                             "escalation was not reset: at the next loss it waited %s%.1f s, more "
                                             "than the refused phase's last wait (%.1f s)" %
                                     (up, g3, ">= " if lower else "", w2, last), ev)
        elif g3 <= max(first * 1.5, first + 0.5) or g3 < last * 0.6:
            res["backoff-reset"] = J("PASS", "after %.0f s up, the first wait is back to %.2f s (was %.2f s)%s" %
                                     (up, g3, last, "; next loss: %.1f s" % w2 if w2 is not None and not lower
                                      else ""), ev)
        else:
            res["backoff-reset"] = J("FAIL", "after %.0f s up the first wait is still %.2f s: the backoff was "
                                             "not reset" % (up, g3), ev)

    # ---- takeover-loop ----
    tk, tke = marks.get("takeover"), marks.get("takeover.end")
    if tk is None:
        res["takeover-loop"] = J("N/A", "the takeover phase did not run (the client did not reconnect earlier)")
    else:
        ct = connects_between(tk, tke)
        itr = run.intruder
        kicks = [d for d in decs if d.get("conn") in mine and d.get("what") == "close"
                 and d.get("reason") == "DUPLICATE_CLIENTID" and tk <= d["wall"] <= tke + 1]
        ev = ["intruder: %d CONNECTs, reconnects %.1f s after each loss" % (len(itr.connects) if itr else 0,
                                                                           1.5)]
        ev += ["client kicked %d time(s); its CONNECTs: %s" % (
            len(kicks), ", ".join(ts(r["wall"]) + ("" if connack_ok(r["conn"]) else "(refused)") for r in ct[:10])
            + (" ... (%d in all)" % len(ct) if len(ct) > 10 else ""))]
        w = (tke - tk) / 1000.0
        gaps = [(ct[i + 1]["wall"] - ct[i]["wall"]) / 1000.0 for i in range(len(ct) - 1)]
        if gaps:
            ev.append("gaps between its CONNECTs: %s s" % " ".join("%.2f" % g for g in gaps))
        if not kicks:
            res["takeover-loop"] = J("N/A", "the client was not connected when the intruder came", ev)
        elif not ct:
            back = [r for r in connects if r["wall"] >= tke]
            res["takeover-loop"] = J("PASS", "no storm: taken over once, no CONNECT during the %.0f s the id was "
                                             "held elsewhere (%s)" % (w, "back %.1f s after the other device left"
                                                                      % ((back[0]["wall"] - tke) / 1000.0) if back
                                                                      else "and none in the %.0f s after it left "
                                                                      "either: a long backoff" %
                                                                      ((marks.get("bye", tke) - tke) / 1000.0)), ev)
        elif any(g < 0.95 for g in gaps):
            res["takeover-loop"] = J("FAIL", "takeover loop: CONNECTs less than 1 s apart while the id is in use "
                                             "elsewhere (%d in %.0f s)" % (len(ct), w), ev)
        elif len(gaps) >= 2 and max(gaps) < min(gaps) * 1.3:
            res["takeover-loop"] = J("FAIL", "takeover loop: %d CONNECTs in %.0f s at a fixed pace (%.1f s): the "
                                             "same short wait after every takeover (no backoff, or one reset at "
                                             "every CONNACK), so two devices with one id kick each other forever"
                                     % (len(ct), w, gaps[0]), ev)
        else:
            res["takeover-loop"] = J("PASS", "%d CONNECT(s) in %.0f s while the id was taken, waits %s" % (
                len(ct), w, "growing" if len(gaps) >= 2 else "not repeated at a fixed pace"), ev)

    # ---- resubscribe ----
    first_filters = set()
    conns_sorted = sorted(mine)
    for r in ins:
        if r.get("type") == "SUBSCRIBE" and conns_sorted and r["conn"] == conns_sorted[0]:
            first_filters |= {f.get("filter") for f in r.get("filters", [])}
    missing, ok, ev = [], 0, []
    for r in connects[1:]:
        c = r["conn"]
        ca = [o for o in outs if o.get("conn") == c and o.get("type") == "CONNACK" and o.get("reason") == 0]
        if not ca:
            continue
        closed = [d["wall"] for d in decs if d.get("conn") == c and d.get("what") == "close"]
        if closed and closed[0] - ca[0]["wall"] < 1500:
            continue  # taken over or dropped before it had a chance
        if ca[0].get("session_present"):
            continue
        got = set()
        for s in ins:
            if s.get("conn") == c and s.get("type") == "SUBSCRIBE":
                got |= {f.get("filter") for f in s.get("filters", [])}
        if first_filters <= got:
            ok += 1
            ev.append("%s conn %s: session present 0, resubscribed %s" % (ts(ca[0]["wall"]), c, ",".join(sorted(got))))
        else:
            missing.append("%s conn %s: session present 0, SUBSCRIBE for %s missing" % (
                ts(ca[0]["wall"]), c, ",".join(sorted(first_filters - got))))
    after = [e for e in run.events if e.get("ev") == "message" and e.get("payload") == "after-reconnect"]
    if after:
        ev.append("%s the message published after the reconnect arrived" % ts(after[0]["_wall"]))
    if not first_filters:
        res["resubscribe"] = J("N/A", "the client never subscribed")
    elif missing:
        res["resubscribe"] = J("FAIL", "%d reconnection(s) without resubscription: its subscriptions are gone "
                                       "and messages stop arriving silently" % len(missing), missing + ev)
    elif ok:
        res["resubscribe"] = J("PASS", "resubscribed after all %d reconnection(s) with session present 0 (%s)" %
                               (ok, run.hello.get("resubscribe", "?")), ev)
    else:
        res["resubscribe"] = J("N/A", "no reconnection with session present 0 was observed")

    # ---- dup-qos0 ----
    dm, de = marks.get("dup"), marks.get("dup.end")
    if dm is None:
        res["dup-qos0"] = J("N/A", "the duplicate phase did not run")
    else:
        dups = [d for d in log if d.get("kind") == "decision" and d.get("what") == "qos0_duplicate"
                and d["wall"] >= dm]
        got = [e for e in run.events if e.get("ev") == "message" and str(e.get("payload", "")).startswith("dup-")]
        bad_ev = [e for e in run.events if dm <= e["_wall"] < de and e.get("ev") in
                  ("error", "disconnected", "gave_up", "_unparsed")]
        closes = [d for d in decs if d.get("conn") in mine and d.get("what") == "close" and dm <= d["wall"] < de - 5]
        ev = ["broker duplicated %d QoS 0 deliveries" % len(dups),
              "client reported %d message(s) for 2 dup-* publishes: %s" % (
                  len(got), " ".join(str(e.get("payload")) for e in got))]
        crashed = bool(run.adapter_died_at and dm <= run.adapter_died_at < de)
        if not dups:
            res["dup-qos0"] = J("N/A", "no duplicate was delivered (the client did not receive its QoS 0 messages)",
                                ev)
        elif bad_ev or closes or crashed:
            res["dup-qos0"] = J("FAIL", "the client failed on a duplicate QoS 0 delivery (AWS may deliver QoS 0 "
                                        "more than once, without DUP)",
                                ev + ["%s adapter: %s %s" % (ts(e["_wall"]), e.get("ev"), e.get("reason", ""))
                                      for e in bad_ev] + ["%s broker closed it: %s" % (ts(d["wall"]), d.get("detail"))
                                                         for d in closes])
        else:
            n = len(got)
            res["dup-qos0"] = J("PASS", "tolerated: no error, still connected%s" % (
                "; the %d copies reached the application (it must be idempotent: QoS 0 is zero or more times)"
                % n if n > 2 else ""), ev)

    # ---- filters per SUBSCRIBE ----
    subs = [r for r in ins if r.get("type") == "SUBSCRIBE"]
    if not subs:
        res["filters-per-sub"] = J("N/A", "no SUBSCRIBE seen")
    else:
        mx = max(len(r.get("filters", [])) for r in subs)
        ev = ["%s SUBSCRIBE conn %s: %s" % (ts(r["wall"]), r["conn"], ",".join(f.get("filter") for f in
                                                                              r.get("filters", [])))
              for r in subs[:3]]
        res["filters-per-sub"] = (J("FAIL", "a SUBSCRIBE with %d filters: AWS drops the connection without a "
                                            "SUBACK above 8" % mx, ev) if mx > 8 else
                                  J("PASS", "%d SUBSCRIBE(s), at most %d filter(s) each" % (len(subs), mx), ev))

    # ---- connect-rate (outside the takeover window, where the intruder shares the id) ----
    thr = []
    for d in decs:
        if d.get("what") == "connect_refused" and "THROTTLED" in str(d.get("detail", "")) and d.get("conn") in mine:
            if tk is not None and tk <= d["wall"] <= (tke or tk) + 1000:
                continue
            thr.append(d)
    fast = []
    for a, b in zip(connects, connects[1:]):
        if b["wall"] - a["wall"] < 1000 and not (tk is not None and tk <= b["wall"] <= (tke or tk) + 1000):
            fast.append("%s CONNECT %.2f s after the previous one" % (ts(b["wall"]), (b["wall"] - a["wall"]) / 1000.0))
    if thr or fast:
        res["connect-rate"] = J("FAIL", "%d CONNECT(s) within 1 s of the previous one: AWS throttles them "
                                        "(1/s per client id)" % max(len(thr), len(fast)),
                                fast + ["%s refused: %s" % (ts(d["wall"]), d.get("detail")) for d in thr])
    else:
        res["connect-rate"] = J("PASS", "%d CONNECTs, none within 1 s of the previous one" % len(connects))

    # ---- clean disconnect ----
    bye = marks.get("bye")
    if bye is None:
        res["clean-disconnect"] = J("N/A", "the client had already exited")
    else:
        disc = [r for r in ins if r.get("type") == "DISCONNECT" and r.get("conn") in mine and r["wall"] >= bye]
        # Was a connection of the client's open (CONNACK 0, not closed) when it was told to disconnect?
        open_at_bye = [c for c in mine if any(o.get("type") == "CONNACK" and o.get("conn") == c and
                                              o.get("reason") == 0 and o["wall"] <= bye for o in outs)
                       and not any(d.get("conn") == c and d.get("what") in ("close", "lost") and d["wall"] <= bye
                                   for d in decs)]
        if disc:
            res["clean-disconnect"] = J("PASS", "sent DISCONNECT (no Will, lifecycle CLIENT_INITIATED_DISCONNECT)",
                                        ["%s DISCONNECT conn %s" % (ts(disc[0]["wall"]), disc[0]["conn"])])
        elif not open_at_bye:
            res["clean-disconnect"] = J("N/A", "the client was not connected when told to disconnect (%s)" % ts(bye))
        else:
            cl = [d for d in decs if d.get("conn") in open_at_bye and d.get("what") in ("close", "lost")]
            res["clean-disconnect"] = J("WARN", "closed without DISCONNECT: AWS publishes the Will and reports "
                                                "the disconnect as not client-initiated",
                                        ["%s told to disconnect" % ts(bye)] +
                                        ["%s conn %s: %s %s" % (ts(d["wall"]), d["conn"], d.get("what"),
                                                                d.get("detail") or "") for d in cl[:2]])

    # ---- other ----
    other = []
    for d in decs:
        if d.get("conn") in intruder:
            continue
        w = d.get("what")
        if w == "close" and d.get("reason") in ("CLIENT_ERROR", "AUTH_ERROR"):
            other.append("%s broker closed conn %s: %s (%s)" % (ts(d["wall"]), d["conn"], d.get("reason"),
                                                               d.get("detail")))
        elif w in ("publish_refused", "publish_rate_discarded", "shared_subscription_refused",
                   "dropped_over_client_max_packet", "puback_unknown_pid"):
            other.append("%s broker: %s %s" % (ts(d["wall"]), w, d.get("detail") or ""))
    errs = [e for e in run.events if e.get("ev") in ("error", "_unparsed")]
    warn = ["%s adapter %s: %s" % (ts(e["_wall"]), e.get("ev"), e.get("reason") or e.get("line")) for e in errs]
    if other:
        res["other"] = J("FAIL", "%d thing(s) AWS punishes" % len(other), other + warn)
    elif warn:
        res["other"] = J("WARN", "the client reported %d error(s) (a user would see them)" % len(warn), warn)
    else:
        res["other"] = J("PASS", "no protocol error, refused publish or error report")
    return res
