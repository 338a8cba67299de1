"""Complaint handling by operators: acknowledge, then resolve. Scope `complaints:write`."""

from __future__ import annotations

from litestar import Controller
from litestar.params import FromPath, JSONBody

from gateway.body import Strict
from gateway.deps import RuntimeDep
from gateway.routes.access import COMPLAINTS_WRITE
from gateway.routes.handlers import post
from gateway.routes.refusals import refusals
from gateway.schemas.complaints import ComplaintRead, Resolution

__all__ = ["ComplaintController"]

NO_SUCH_COMPLAINT = {404: "No complaint has this id."}


class ComplaintController(Controller):
    path = "/v1/complaints"
    guards = [COMPLAINTS_WRITE.guard]  # noqa: RUF012
    tags = ["complaints"]  # noqa: RUF012

    @post(
        "/{complaint_id:str}/acknowledge",
        summary="Acknowledge a complaint",
        operation_id="acknowledgeComplaint", status_code=200,
        responses=refusals(400, why={**NO_SUCH_COMPLAINT, 409: "The complaint is not `open`."}),
    )  # fmt: skip
    async def acknowledge(self, runtime: RuntimeDep, complaint_id: FromPath[str]) -> ComplaintRead:
        return await runtime.complaints.acknowledge(complaint_id)

    @post(
        "/{complaint_id:str}/resolve",
        summary="Resolve a complaint with an answer the user sees",
        operation_id="resolveComplaint", status_code=200,
        dto=Strict[Resolution], return_dto=None,
        responses=refusals(400, 413, why={**NO_SUCH_COMPLAINT, 409: "The complaint is not `acknowledged`."}),
    )  # fmt: skip
    async def resolve(
        self, runtime: RuntimeDep, complaint_id: FromPath[str], data: JSONBody[Resolution]
    ) -> ComplaintRead:
        return await runtime.complaints.resolve(complaint_id, data.resolution)
