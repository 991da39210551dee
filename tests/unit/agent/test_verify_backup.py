"""What the verification Job takes from the session it verifies: the hosts it says
succeeded, with the snapshot id and size each recorded (the snapshots themselves are chosen by
their tags)."""

from __future__ import annotations

from agent.verify_backup import HostSnapshot, expected_hosts


def test_each_host_the_session_says_succeeded_is_expected_with_what_it_recorded() -> None:
    session = {
        "status": {
            "targets": [
                {
                    "ref": {"kind": "StatefulSet", "name": "db"},
                    "stats": [
                        {
                            "hostname": "host-0",
                            "phase": "Succeeded",
                            "snapshots": [{"name": "abcdef0123", "totalSize": "1.500 KiB"}],
                        },
                        {"hostname": "host-1", "phase": "Failed", "error": "boom"},
                    ],
                },
                {"ref": {"kind": "PersistentVolumeClaim", "name": "data"}, "stats": None},
                {
                    "ref": {"kind": "Deployment", "name": "web"},
                    "stats": [{"hostname": "host-0", "phase": "Succeeded"}],
                },
            ]
        }
    }
    assert expected_hosts(session) == [
        HostSnapshot("StatefulSet/db", "host-0", "abcdef0123", 1536),
        HostSnapshot("Deployment/web", "host-0", "", 0),
    ]
    assert HostSnapshot("Deployment/web", "host-0").name == "-"
    assert HostSnapshot("a/b", "h", "abcdef0123").name == "abcdef01"


def test_a_status_of_any_shape_gives_no_host_rather_than_an_error() -> None:
    for status in ({}, {"targets": None}, {"targets": [{"stats": [None, 3, "x"]}]}):
        assert expected_hosts({"status": status}) == []
