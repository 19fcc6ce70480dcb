"""
The OpenAPI 3.1 description of the admin API (served at /api/openapi.json).
The tests validate the document and check every answer of the real API
against the schemas here, so it cannot drift from the code.
"""

from __future__ import annotations

from typing import Any

_NULLABLE_STRING = {"type": ["string", "null"]}
_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {_JSON: {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _content(_ref("Error"))}


_ERRORS = {
    "400": _error("Invalid input; `field` names the offending field"),
    "401": _error("Authentication required (Basic or Bearer)"),
    "404": _error("No such user or resource"),
    "405": _error("Method not allowed"),
    "415": _error("The body must be application/json"),
    "503": _error("The store failed (the write was not made); try again"),
}

_USER_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*$"},
}

_STATE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "status": {"enum": ["online", "offline", "never"]},
        "ipv4": _NULLABLE_STRING,
        "ipv6": _NULLABLE_STRING,
        "ttl": {"type": ["integer", "null"]},
        "offline": {"type": "boolean"},
        "updated_at": _NULLABLE_STRING,
        "method": _NULLABLE_STRING,
        "client_address": _NULLABLE_STRING,
    },
}

_USER = {
    "type": "object",
    "description": "A user in the users document form; secrets only as stored verifiers. "
    "On input `password` (plain text) may stand for the verifiers.",
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string"},
        "password": {"type": "string", "writeOnly": True},
        "gnudip": {"type": "boolean", "writeOnly": True},
        "password_hash": _NULLABLE_STRING,
        "md5_verifier": _NULLABLE_STRING,
        "tsig_secret": _NULLABLE_STRING,
        "tsig_algorithm": {"type": "string"},
        "tsig_from_password": {"type": "boolean"},
        "offline_ipv4": _NULLABLE_STRING,
        "offline_ipv6": _NULLABLE_STRING,
        "hostnames": {"type": "array", "items": {"type": "string"}},
        "notes": {"type": "string"},
        "disabled": {"type": "boolean"},
        "state": {"oneOf": [_ref("HostState"), {"type": "null"}]},
    },
}

_TXT_VALUE = {
    "type": "object",
    "description": "An ACME DNS-01 challenge value and when it goes by itself",
    "required": ["name", "value", "expires"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "description": "The challenge owner name, _acme-challenge.<the user's name>"},
        "value": {"type": "string"},
        "expires": {"type": "string", "description": "ISO 8601, UTC"},
    },
}

_STATE_ENTRY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "state", "ipv4", "ipv6", "ttl", "last_update", "method", "client_address", "names", "txt"],
    "properties": {
        "id": {"type": "string"},
        "state": {"enum": ["online", "offline", "never", "disabled"]},
        "ipv4": _NULLABLE_STRING,
        "ipv6": _NULLABLE_STRING,
        "ttl": {"type": ["integer", "null"]},
        "last_update": _NULLABLE_STRING,
        "method": _NULLABLE_STRING,
        "client_address": _NULLABLE_STRING,
        "names": {"type": "array", "items": {"type": "string"}},
        "txt": {"type": "array", "items": _ref("TXTValue"), "description": "The ACME challenge values it holds"},
    },
}

_TXT = {
    "type": "object",
    "required": ["id", "names", "txt"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string"},
        "names": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The challenge owner names the user may hold values at",
        },
        "txt": {"type": "array", "items": _ref("TXTValue"), "description": "The values it holds, oldest first"},
    },
}

_ACME_KEY_PROPERTIES = {
    "key_id": {"type": "string"},
    "label": {"type": "string"},
    "created": {"type": "string", "description": "ISO 8601, UTC"},
}
_ACME_KEY = {
    "type": "object",
    "description": "A scoped key: it may set the user's challenge values and nothing else",
    "required": ["key_id", "label", "created"],
    "additionalProperties": False,
    "properties": _ACME_KEY_PROPERTIES,
}
_NEW_ACME_KEY = {
    "type": "object",
    "description": "A new scoped key with its secret: shown this once (the store keeps only its SHA-256)",
    "required": ["key_id", "label", "created", "secret"],
    "additionalProperties": False,
    "properties": {**_ACME_KEY_PROPERTIES, "secret": {"type": "string"}},
}
_ACME_KEYS = {
    "type": "object",
    "required": ["id", "keys"],
    "additionalProperties": False,
    "properties": {"id": {"type": "string"}, "keys": {"type": "array", "items": _ref("AcmeKey")}},
}

_USERS_DOCUMENT = {
    "type": "object",
    "required": ["format", "version", "users"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": "dyndns_plugin.users"},
        "version": {"const": 1},
        "users": {"type": "array", "items": _ref("User")},
    },
}

_CONFIG = {
    "type": "object",
    "required": ["users"],
    "additionalProperties": False,
    "properties": {
        "settings": {
            "type": "object",
            "description": "The effective settings (read-only: a PUT must leave them as they are)",
        },
        "users": _ref("UsersDocument"),
    },
}

_ZONE_RRSET = {
    "type": "object",
    "description": "An RRset an RFC 2136 update set: its records, or deleted (it hides the zone file's)",
    "required": ["name", "type"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "type": {"type": "string"},
        "ttl": {"type": "integer"},
        "data": {"type": "array", "items": {"type": "string"}},
        "deleted": {"const": True},
    },
}
_ZONE = {
    "type": "object",
    "required": ["origin", "serial", "updates", "updated"],
    "additionalProperties": False,
    "properties": {
        "origin": {"type": "string"},
        "serial": {"type": "integer"},
        "updates": {"type": "boolean", "description": "Whether the zone takes RFC 2136 updates"},
        "updated": {"type": "array", "items": _ref("ZoneRRset")},
    },
}
_ZONES = {
    "type": "object",
    "required": ["zones"],
    "additionalProperties": False,
    "properties": {"zones": {"type": "array", "items": _ref("Zone")}},
}
_ZONE_PARAMETERS = [
    {"name": "origin", "in": "path", "required": True, "schema": {"type": "string"}},
    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
]

_TXT_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "One of the user's names, or its challenge owner name (_acme-challenge.<name>)",
}
_KEY_ID = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
_TXT_RESPONSE = {"description": "The user's challenge values after it", "content": _content(_ref("TXT"))}
_TXT_404 = _error("No such user, or the name is not one the user may hold challenge values at")
_TXT_409 = _error("The name holds the most values it may already (`field`: value), or the user is disabled")

_ETAG_HEADER = {"ETag": {"schema": {"type": "string"}, "description": "Version of the users"}}

# Shared by the routes and their aliases (an alias answers like its target).
_STATE_RESPONSES = {
    "200": {"description": "The state", "content": _content(_ref("State"))},
    "400": _ERRORS["400"],
    "401": _ERRORS["401"],
}
#: Paging through users in id order (keyset): C{limit} users after the id C{after}.
_STATE_PAGE = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
        "description": "At most this many users, in id order; the answer then has next",
    },
    {
        "name": "after",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "With limit: the users whose ids sort after this one (the previous page's next)",
    },
]
_CONFIG_GET_RESPONSES = {
    "200": {"description": "The configuration", "headers": _ETAG_HEADER, "content": _content(_ref("Config"))},
    "401": _ERRORS["401"],
}
_IF_MATCH = [{"name": "If-Match", "in": "header", "required": True, "schema": {"type": "string"}}]
_CONFIG_PUT_RESPONSES = {
    "200": {"description": "Replaced", "headers": _ETAG_HEADER, "content": _content(_ref("Config"))},
    "400": _ERRORS["400"],
    "401": _ERRORS["401"],
    "415": _ERRORS["415"],
    "409": _error("A host name belongs to two users"),
    "412": _error("The ETag differs: someone changed the users since"),
    "428": _error("If-Match missing"),
    "503": _ERRORS["503"],
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "dyndns_plugin admin API",
        "version": "1",
        "description": "Users, their state and the configuration of a dyndns_plugin server.",
    },
    "components": {
        "securitySchemes": {
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error", "field"],
                "additionalProperties": False,
                "properties": {"error": {"type": "string"}, "field": _NULLABLE_STRING},
            },
            "HostState": _STATE,
            "User": _USER,
            "StateEntry": _STATE_ENTRY,
            "State": {
                "type": "object",
                "required": ["users"],
                "additionalProperties": False,
                "properties": {
                    "users": {"type": "array", "items": _ref("StateEntry")},
                    "next": {
                        "type": ["string", "null"],
                        "description": "With limit only: the id to ask after for the next page, null at the end",
                    },
                    "zones": {
                        "type": "array",
                        "items": _ref("Zone"),
                        "description": "The host zones, with what RFC 2136 updates set in them (when any takes them)",
                    },
                    "counts": {
                        "type": "object",
                        "description": "With limit only: how many users there are in each state (all users)",
                        "required": ["online", "offline", "never", "disabled"],
                        "additionalProperties": False,
                        "properties": {
                            state: {"type": "integer", "minimum": 0}
                            for state in ("online", "offline", "never", "disabled")
                        },
                    },
                },
            },
            "UsersDocument": _USERS_DOCUMENT,
            "Zone": _ZONE,
            "ZoneRRset": _ZONE_RRSET,
            "Zones": _ZONES,
            "Config": _CONFIG,
            "TXTValue": _TXT_VALUE,
            "TXT": _TXT,
            "AcmeKey": _ACME_KEY,
            "NewAcmeKey": _NEW_ACME_KEY,
            "AcmeKeys": _ACME_KEYS,
        },
    },
    "security": [{"basic": []}, {"bearer": []}],
    "paths": {
        "/api/state": {
            "get": {
                "summary": "Every user's state, IPv4, IPv6, TTL, last update, method, client address",
                "parameters": _STATE_PAGE,
                "responses": _STATE_RESPONSES,
            },
        },
        "/api/config": {
            "get": {
                "summary": "Settings and users",
                "responses": _CONFIG_GET_RESPONSES,
            },
            "put": {
                "summary": "Replace all users atomically (If-Match: the ETag read)",
                "parameters": _IF_MATCH,
                "requestBody": {"required": True, "content": _content(_ref("Config"))},
                "responses": _CONFIG_PUT_RESPONSES,
            },
        },
        "/api/users/{id}": {
            "parameters": [_USER_ID],
            "get": {
                "summary": "One user",
                "responses": {
                    "200": {"description": "The user", "content": _content(_ref("User"))},
                    "401": _ERRORS["401"],
                    "404": _ERRORS["404"],
                },
            },
            "put": {
                "summary": "Create or replace one user",
                "requestBody": {"required": True, "content": _content(_ref("User"))},
                "responses": {
                    "200": {"description": "Replaced", "content": _content(_ref("User"))},
                    "201": {"description": "Created", "content": _content(_ref("User"))},
                    "400": _ERRORS["400"],
                    "401": _ERRORS["401"],
                    "415": _ERRORS["415"],
                    "409": _error("A host name belongs to another user"),
                    "503": _ERRORS["503"],
                },
            },
            "patch": {
                "summary": "Change some fields of one user",
                "requestBody": {"required": True, "content": _content(_ref("User"))},
                "responses": {
                    "200": {"description": "Changed", "content": _content(_ref("User"))},
                    "400": _ERRORS["400"],
                    "401": _ERRORS["401"],
                    "404": _ERRORS["404"],
                    "415": _ERRORS["415"],
                    "409": _error("A host name belongs to another user"),
                    "503": _ERRORS["503"],
                },
            },
            "delete": {
                "summary": "Remove one user",
                "responses": {
                    "204": {"description": "Removed"},
                    "401": _ERRORS["401"],
                    "404": _ERRORS["404"],
                    "503": _ERRORS["503"],
                },
            },
        },
        "/api/users/{id}/offline": {
            "parameters": [_USER_ID],
            "post": {
                "summary": "Set the user offline (its offline IP, or no address)",
                "requestBody": {"required": True, "content": _content({"type": "object"})},
                "responses": {
                    "200": {"description": "The user's new state", "content": _content(_ref("StateEntry"))},
                    "400": _ERRORS["400"],
                    "401": _ERRORS["401"],
                    "404": _ERRORS["404"],
                    "409": _error("The user is disabled"),
                    "415": _ERRORS["415"],
                    "503": _ERRORS["503"],
                },
            },
        },
        "/api/users/{id}/txt": {
            "parameters": [_USER_ID],
            "get": {
                "summary": "The user's ACME challenge values, and the names it may hold them at",
                "responses": {
                    "200": {"description": "The values", "content": _content(_ref("TXT"))},
                    "401": _ERRORS["401"],
                    "404": _ERRORS["404"],
                },
            },
        },
        "/api/users/{id}/txt/{name}": {
            "parameters": [_USER_ID, _TXT_NAME],
            "put": {
                "summary": "Add a challenge value at the name (again: a fresh lifetime)",
                "requestBody": {
                    "required": True,
                    "content": _content(
                        {
                            "type": "object",
                            "required": ["value"],
                            "additionalProperties": False,
                            "properties": {"value": {"type": "string", "minLength": 1, "maxLength": 255}},
                        }
                    ),
                },
                "responses": {
                    "200": _TXT_RESPONSE,
                    "400": _ERRORS["400"],
                    "401": _ERRORS["401"],
                    "404": _TXT_404,
                    "409": _TXT_409,
                    "415": _ERRORS["415"],
                    "503": _ERRORS["503"],
                },
            },
            "delete": {
                "summary": "Remove one challenge value at the name (value), or every one",
                "parameters": [
                    {
                        "name": "value",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Only this value (default: all at the name)",
                    }
                ],
                "responses": {
                    "200": _TXT_RESPONSE,
                    "400": _ERRORS["400"],
                    "401": _ERRORS["401"],
                    "404": _TXT_404,
                    "409": _error("The user is disabled"),
                    "503": _ERRORS["503"],
                },
            },
        },
        "/api/users/{id}/acme-keys": {
            "parameters": [_USER_ID],
            "get": {
                "summary": "The user's scoped ACME keys (never their secrets)",
                "responses": {
                    "200": {"description": "The keys, oldest first", "content": _content(_ref("AcmeKeys"))},
                    "401": _ERRORS["401"],
                    "404": _ERRORS["404"],
                },
            },
            "post": {
                "summary": "A new scoped ACME key; its secret is in this answer only",
                "requestBody": {
                    "required": True,
                    "content": _content(
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"label": {"type": "string", "maxLength": 100}},
                        }
                    ),
                },
                "responses": {
                    "201": {"description": "The key and its secret", "content": _content(_ref("NewAcmeKey"))},
                    "400": _ERRORS["400"],
                    "401": _ERRORS["401"],
                    "404": _ERRORS["404"],
                    "415": _ERRORS["415"],
                    "503": _ERRORS["503"],
                },
            },
        },
        "/api/users/{id}/acme-keys/{key_id}": {
            "parameters": [_USER_ID, _KEY_ID],
            "delete": {
                "summary": "Revoke a scoped ACME key",
                "responses": {
                    "204": {"description": "Revoked"},
                    "401": _ERRORS["401"],
                    "404": _error("No such user, or the user has no such key"),
                    "503": _ERRORS["503"],
                },
            },
        },
        "/api/zones": {
            "get": {
                "summary": "The host zones: serial, and the RRsets RFC 2136 updates set in them",
                "responses": {
                    "200": {"description": "The zones", "content": _content(_ref("Zones"))},
                    "401": _ERRORS["401"],
                },
            }
        },
        "/api/zones/{origin}/{name}": {
            "parameters": _ZONE_PARAMETERS,
            "delete": {
                "summary": "Drop what updates set at the name (every type): the zone file's records show again",
                "responses": {
                    "200": {"description": "The zone after it", "content": _content(_ref("Zone"))},
                    "401": _ERRORS["401"],
                    "404": _error("No such host zone, or the name is not in it"),
                    "503": _ERRORS["503"],
                },
            },
        },
        "/api/zones/{origin}/{name}/{type}": {
            "parameters": [
                *_ZONE_PARAMETERS,
                {"name": "type", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "delete": {
                "summary": "Drop what updates set at the name for one record type",
                "responses": {
                    "200": {"description": "The zone after it", "content": _content(_ref("Zone"))},
                    "400": _ERRORS["400"],
                    "401": _ERRORS["401"],
                    "404": _error("No such host zone, or the name is not in it"),
                    "503": _ERRORS["503"],
                },
            },
        },
        "/pluginstate": {
            "get": {
                "summary": "Alias of GET /api/state (the original's command)",
                "parameters": _STATE_PAGE,
                "responses": _STATE_RESPONSES,
            }
        },
        "/getpluginconfig": {"get": {"summary": "Alias of GET /api/config", "responses": _CONFIG_GET_RESPONSES}},
        "/updatepluginconfig": {
            method: {
                "summary": "Alias of PUT /api/config",
                "parameters": _IF_MATCH,
                "requestBody": {"required": True, "content": _content(_ref("Config"))},
                "responses": _CONFIG_PUT_RESPONSES,
            }
            for method in ("put", "post")
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1"}, "401": _ERRORS["401"]},
            }
        },
    },
}


def _declare_lockout(document: dict[str, Any]) -> None:
    """Every authenticated operation may answer 429 to a locked-out source."""
    for operations in document["paths"].values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue  # the path's "parameters"
            responses = operation.get("responses", {})
            if "401" in responses:
                responses["429"] = _error(
                    "Too many failed logins from this source: locked out for `Retry-After` seconds"
                )


_declare_lockout(DOCUMENT)
