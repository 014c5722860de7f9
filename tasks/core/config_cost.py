"""The prices that turn a run's measured CPU and memory into a cost (`cost:`)."""

from __future__ import annotations

from pydantic import Field

from tasks.core.config_section import Section


class CostConfig(Section):
    """Prices that turn a run's measured CPU and memory into an estimated cost
    (tasks/registry/cost.py).
    Defaults: AWS Fargate on-demand, us-east-1, Linux/x86: $0.04048 per vCPU-hour and $0.004445
    per GB-hour, the rates quoted as current in June 2026 (unchanged since the January 2019 price
    cut). Check https://aws.amazon.com/fargate/pricing/ for your region and date."""

    vcpu_hour_usd: float = Field(0.04048, ge=0, description="Price of one vCPU for an hour.")
    gb_hour_usd: float = Field(0.004445, ge=0, description="Price of one GB of memory an hour.")
    prices_as_of: str = Field(
        "2026-06 (AWS Fargate us-east-1 Linux/x86 on-demand)",
        description="When and where the prices come from; shown beside every cost.",
    )
