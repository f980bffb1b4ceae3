import Agent
import VMPulseCore

/// The `rpc.discover` answer: an OpenRPC 1.2 document (https://spec.open-rpc.org) that
/// describes every method, so that a client can be generated from it.
enum OpenRPC {
    static let vmIDs: JSONValue = [
        "name": "vmIDs", "required": true, "description": "UUIDs (or names) of the VMs to answer for",
        "schema": ["type": "array", "items": ["type": "string"], "maxItems": 10000],
    ]

    /// A result keyed by VM UUID, each value `fields` or an error.
    static func perVM(_ name: String, _ fields: [String: JSONValue]) -> JSONValue {
        [
            "name": .string(name),
            "schema": [
                "type": "object",
                "additionalProperties": [
                    "oneOf": [
                        ["type": "object", "properties": .object(fields)],
                        ["type": "object", "required": ["error"], "properties": ["error": ["$ref": "#/components/schemas/Error"]]],
                    ],
                ],
            ],
        ]
    }

    static func method(_ name: String, _ summary: String, params: [JSONValue], result: JSONValue) -> JSONValue {
        ["name": .string(name), "summary": .string(summary), "paramStructure": "either", "params": .array(params), "result": result]
    }

    static let string: JSONValue = ["type": "string"]
    static let number: JSONValue = ["type": "number"]
    static let integer: JSONValue = ["type": "integer"]
    static let boolean: JSONValue = ["type": "boolean"]
    static let objects: JSONValue = ["type": "array", "items": ["type": "object"]]

    static let document: JSONValue = [
        "openrpc": "1.2.6",
        "info": ["title": "vmpulse host API", "version": "1",
                 "description": "The engine verbs of a vmpulse agent, answered from its latest snapshots. WebSocket clients may also call subscribe."],
        "methods": [
            method("Host.getAllVmRuntimeStats", "What an engine polls every few seconds, for every VM", params: [], result: perVM("runtimeStats", [
                "cpuUser": number, "cpuSys": number, "memUsage": number, "elapsedTime": integer,
                "status": ["type": "string", "enum": ["Up", "Paused", "Migration Source", "Saving State", "Powering down", "Down", "Suspended", "Unknown"]],
                "statsAge": number,
                "hashes": ["type": "object", "properties": ["info": string, "config": string, "status": string, "guestDetails": string]],
            ])),
            method("VM.getStatus", "What changes while a VM runs, apart from counters", params: [vmIDs], result: perVM("status", [
                "timeOffset": integer, "monitorResponse": integer, "clientIp": string, "username": string, "session": string,
                "guestIPs": string, "pauseCode": ["type": "string", "enum": ["ENOSPC", "EIO", "EOTHER", "NOERR"]],
            ])),
            method("VM.getConfInfo", "What a VM was started with", params: [vmIDs], result: perVM("confInfo", [
                "acpiEnable": boolean, "displayPort": integer, "displaySecurePort": integer, "displayType": string, "displayIp": string,
                "pid": integer, "vmType": string, "vmName": string, "kvmEnable": boolean, "cdrom": string, "boot": string,
            ])),
            method("VM.getGuestDetails", "What a guest reports of itself through its agent", params: [vmIDs], result: perVM("guestDetails", [
                "appsList": ["type": "array", "items": string], "netIfaces": objects,
            ])),
            method("Host.getAllVmDeviceStats", "Memory, balloon, NIC and disk statistics of every VM", params: [], result: perVM("deviceStats", [
                "memoryStats": ["type": "object"], "balloonInfo": ["type": "object"], "disksUsage": objects, "network": objects, "disks": objects,
            ])),
            method("Host.getAllDomainStats", "The records of vmpulse stats", params: [
                ["name": "groups", "schema": ["type": "array", "items": string], "description": "groups to give (default all)"],
                ["name": "vmIDs", "schema": ["type": "array", "items": string], "description": "VMs to give (default all)"],
                ["name": "enforce", "schema": boolean, "description": "refuse a group this host cannot give"],
            ], result: ["name": "domainStats", "schema": ["type": "object", "properties": [
                "records": objects, "leftOut": ["type": "array", "items": string], "unknown": ["type": "object"],
            ]]]),
            method("Host.getBillingRecords", "The ledger's usage rows changed after a revision and its gaps after an id, for a fleet store", params: [
                ["name": "after", "schema": ["type": "integer", "minimum": 0], "description": "the `next` of the previous page (default 0, from the start)"],
                ["name": "afterGap", "schema": ["type": "integer", "minimum": 0], "description": "the `nextGap` of the previous page (default 0)"],
                ["name": "limit", "schema": ["type": "integer", "minimum": 1, "maximum": 10000], "description": "rows of each kind per page (default 1000)"],
            ], result: ["name": "billingRecords", "schema": ["type": "object", "properties": [
                "ledger": string, "records": objects, "gaps": objects, "next": integer, "nextGap": integer, "more": boolean,
            ]]]),
            method("subscribe", "WebSocket only: push notifications of these kinds (default all) as method `event`", params: [
                ["name": "kinds", "schema": ["type": "array", "items": ["type": "string", "enum": .array(AgentEvent.Kind.allCases.map { .string($0.rawValue) })]]],
            ], result: ["name": "subscribed", "schema": ["type": "object", "properties": ["kinds": ["type": "array", "items": string]]]]),
            method("rpc.discover", "This document", params: [], result: ["name": "document", "schema": ["type": "object"]]),
        ],
        "components": ["schemas": ["Error": ["type": "object", "required": ["code", "message"],
                                              "properties": ["code": integer, "message": string, "data": [:]]]]],
    ]
}
