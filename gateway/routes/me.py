"""Preference center: `/v1/me/...`, acting for the person in the user token and only for them."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response
from litestar.openapi import ResponseSpec
from litestar.params import FromPath, JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from gateway.auth import Principal
from gateway.body import Strict
from gateway.deps import RuntimeDep
from gateway.errors import InvalidInput
from gateway.routes.access import USER
from gateway.routes.handlers import delete, get, patch, post, put
from gateway.routes.refusals import refusals
from gateway.schemas.complaints import (
    ComplaintCreate,
    ComplaintCreated,
    ComplaintRead,
    EventCreate,
    EventRecorded,
)
from gateway.schemas.me import (
    ConsentAnswer,
    ConsentEvent,
    ConsentUpdate,
    DeviceCreate,
    DeviceCreated,
    DeviceRead,
    ExportRead,
    LocationRead,
    LocationUpdate,
    PreferencesRead,
    PreferencesUpdate,
)
from gateway.schemas.pushes import NotificationRead, holds_user_id
from gateway.services.devices import MAX_ACTIVE_DEVICES
from policies.catalog import Purpose

__all__ = ["MeController"]

UserRequest = Request[Principal, Any, Any]
NO_PUSH_TO_COMPLAIN_OF = "`push_id` names no push sent to this user, or to be sent (their notifications)."
DeviceId = Annotated[str, PathParameter(pattern=r"^dev_[0-9a-f]{24}$(?!\n)", max_length=28)]
PushId = Annotated[str, PathParameter(pattern=r"^psh_[0-9a-f]{24}$(?!\n)", max_length=28)]


def _ref(request: UserRequest) -> str:
    assert request.user.subject_ref is not None  # the USER guard guarantees it
    return request.user.subject_ref


def _changing(request: UserRequest, runtime: RuntimeDep) -> str:
    """The user's ref, one of their changes taken (`UserWrites`): for each route that keeps
    something of theirs, erasure and push events excepted."""
    ref = _ref(request)
    runtime.user_writes.take(ref)
    return ref


class MeController(Controller):
    path = "/v1/me"
    guards = [USER.guard]  # noqa: RUF012
    tags = ["preference center"]  # noqa: RUF012

    @get(
        "/preferences",
        summary="My preferences, consents and their version",
        operation_id="getPreferences",
        responses=refusals(),
    )
    async def get_preferences(self, request: UserRequest, runtime: RuntimeDep) -> PreferencesRead:
        return runtime.preferences.read(_ref(request))

    @patch(
        "/preferences",
        summary="Change my topics, quiet hours, caps, time zone or language",
        operation_id="updatePreferences", dto=Strict[PreferencesUpdate], return_dto=None,
        responses=refusals(400, 413, 429),
    )  # fmt: skip
    async def update_preferences(
        self, request: UserRequest, runtime: RuntimeDep, data: JSONBody[PreferencesUpdate]
    ) -> PreferencesRead:
        return await runtime.preferences.update(_changing(request, runtime), data, request.user.actor)

    @put(
        "/consents/{purpose:str}",
        summary="Grant or withdraw a consent; returns a signed receipt",
        operation_id="setConsent", dto=Strict[ConsentUpdate], return_dto=None,
        responses=refusals(400, 413, 429),
    )  # fmt: skip
    async def set_consent(
        self,
        request: UserRequest,
        runtime: RuntimeDep,
        purpose: FromPath[Purpose],
        data: JSONBody[ConsentUpdate],
    ) -> ConsentAnswer:
        user_id = request.user.user_id
        if user_id is not None and holds_user_id(data.notice_version, user_id.reveal()):
            # Kept in clear in the ledger, which no erasure changes.
            raise InvalidInput(
                "notice_version: a notice version must not hold the user's id", "notice_version"
            )
        return await runtime.preferences.set_consent(
            _changing(request, runtime), purpose, data, actor=request.user.actor, source="preference_center"
        )

    @get(
        "/consents/history",
        summary="My consent changes, oldest first, each with its receipt id",
        operation_id="getConsentHistory",
        responses=refusals(),
    )
    async def consent_history(self, request: UserRequest, runtime: RuntimeDep) -> list[ConsentEvent]:
        return await runtime.preferences.history(_ref(request))

    @post(
        "/devices",
        summary="Register a device to receive pushes",
        operation_id="registerDevice", dto=Strict[DeviceCreate], return_dto=None, status_code=201,
        responses={
            200: ResponseSpec(
                DeviceCreated, description="The token was registered already: its device.",
                generate_examples=False,
            ),
            **refusals(
                400, 413, 429, why={409: f"The user has {MAX_ACTIVE_DEVICES} active devices already."}
            ),
        },
    )  # fmt: skip
    async def register_device(
        self, request: UserRequest, runtime: RuntimeDep, data: JSONBody[DeviceCreate]
    ) -> Response[DeviceCreated]:
        device_id, created = await runtime.devices.register(_changing(request, runtime), data)
        return Response(DeviceCreated(device_id), status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @get(
        "/devices",
        summary="My devices (a hint of each token, never the token)",
        operation_id="listDevices",
        responses=refusals(),
    )
    async def list_devices(self, request: UserRequest, runtime: RuntimeDep) -> list[DeviceRead]:
        return runtime.devices.list(_ref(request))

    @delete(
        "/devices/{device_id:str}",
        summary="Remove one of my devices",
        operation_id="deleteDevice", status_code=HTTP_204_NO_CONTENT,
        responses=refusals(400, 429, why={404: "The user has no device with this id."}),
    )  # fmt: skip
    async def delete_device(self, request: UserRequest, runtime: RuntimeDep, device_id: DeviceId) -> None:
        await runtime.devices.remove(_changing(request, runtime), device_id)

    @put(
        "/location",
        summary="Share my location (kept as a coarse geohash)",
        operation_id="setLocation", dto=Strict[LocationUpdate], return_dto=None,
        responses=refusals(400, 413, 429, why={409: "The user has not granted `location` consent."}),
    )  # fmt: skip
    async def set_location(
        self, request: UserRequest, runtime: RuntimeDep, data: JSONBody[LocationUpdate]
    ) -> LocationRead:
        return await runtime.devices.set_location(_changing(request, runtime), data)

    @get(
        "/notifications",
        summary="The pushes accepted for me, newest first, and why each was allowed",
        operation_id="listMyNotifications",
        responses=refusals(),
    )
    async def notifications(self, request: UserRequest, runtime: RuntimeDep) -> list[NotificationRead]:
        return runtime.pushes.notifications(_ref(request))

    @post(
        "/complaints",
        summary="Complain about a push or the messaging",
        operation_id="fileComplaint",
        dto=Strict[ComplaintCreate],
        return_dto=None,
        status_code=201,
        responses=refusals(400, 413, 429, why={404: NO_PUSH_TO_COMPLAIN_OF}),
    )
    async def file_complaint(
        self, request: UserRequest, runtime: RuntimeDep, data: JSONBody[ComplaintCreate]
    ) -> ComplaintCreated:
        return await runtime.complaints.file(_changing(request, runtime), data, request.user.actor)

    @get(
        "/complaints",
        summary="My complaints and their answers",
        operation_id="listMyComplaints",
        responses=refusals(),
    )
    async def list_complaints(self, request: UserRequest, runtime: RuntimeDep) -> list[ComplaintRead]:
        return runtime.complaints.list_own(_ref(request))

    @post(
        "/pushes/{push_id:str}/events",
        summary="Report that a push was opened, clicked or dismissed",
        operation_id="recordPushEvent", status_code=201,
        dto=Strict[EventCreate], return_dto=None,
        responses={
            200: ResponseSpec(
                EventRecorded, description="The push had this event already (`recorded`: false).",
                generate_examples=False,
            ),
            **refusals(400, 413, why={404: "No push delivered to this user has this id."}),
        },
    )  # fmt: skip
    async def record_event(
        self, request: UserRequest, runtime: RuntimeDep, push_id: PushId, data: JSONBody[EventCreate]
    ) -> Response[EventRecorded]:
        recorded = await runtime.complaints.record_event(_ref(request), push_id, data.type)
        return Response(recorded, status_code=HTTP_201_CREATED if recorded.recorded else HTTP_200_OK)

    @get(
        "/export",
        summary="Export everything held about me",
        operation_id="exportMyData",
        responses=refusals(),
    )
    async def export(self, request: UserRequest, runtime: RuntimeDep) -> ExportRead:
        return await runtime.rights.export(_ref(request))

    @delete(
        "/",
        summary="Erase me: my data keys and personal data, for good",
        operation_id="eraseMe",
        status_code=HTTP_204_NO_CONTENT,
        responses=refusals(),
    )
    async def erase(self, request: UserRequest, runtime: RuntimeDep) -> None:
        await runtime.rights.erase(_ref(request), request.user.actor)
