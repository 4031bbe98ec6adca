# ruff: noqa: E501
"""Realistic comparisons for tests and benches, mirroring the seed pages in samples/comparisons.

Built in code (not parsed) so the issue tests do not depend on the page parser;
``insert_comparisons`` stores them as the catalog would (one ComparisonRow each).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from newsletter.config import Settings
from newsletter.db import session_scope
from newsletter.issues.content import IssueContent
from newsletter.issues.verdicts import build_content, summarise_issue
from newsletter.models import Comparison, Review, ToolEntry
from newsletter.tables import ComparisonRow

AXOLOTL_DESCRIPTION = (
    "Axolotl is the go-to open-source fine-tuning framework for the local LLM community, and v0.16 is "
    "its most significant performance release to date. The headline numbers are striking: 15x faster "
    "training for Mixture-of-Experts (MoE) models with LoRA adapters, 40x reduction in memory usage for "
    "the same configurations, and 58% faster GRPO async training."
)
AXOLOTL_TAGLINE = "15x faster MoE+LoRA fine-tuning with 40x memory reduction"

AXOLOTL_REVIEWS_000 = [
    Review(
        persona="Builder",
        score=80,
        verdict="ship",
        quote="40x memory reduction on MoE+LoRA is not a rounding error — this is the difference between needing a $20K H100 and a $1.5K consumer GPU. The Gemma 4 day-0 support means I can fine-tune Google's best open model the same day it drops. Immediate upgrade for any ML pipeline.",
    ),
    Review(
        persona="Skeptic",
        score=80,
        verdict="ship",
        quote="The numbers sound impressive but ML framework benchmarks are notoriously cherry-picked for specific batch sizes and hardware configs. That said, Axolotl has a strong track record and these improvements are backed by code, not just marketing. Worth verifying on your specific hardware before assuming the headline numbers.",
    ),
    Review(
        persona="Futurist",
        score=80,
        verdict="ship",
        quote="The democratization of fine-tuning MoE models changes the economics of specialized AI entirely. When a solo researcher can fine-tune a 30B sparse model on consumer hardware, the advantage of large labs with GPU clusters shrinks considerably. This is part of the broader forces making domain-specific models accessible to everyone.",
    ),
    Review(
        persona="Creator",
        score=45,
        verdict="skip",
        quote="Fine-tuning frameworks are deeply in developer territory and hard to justify for creative workflows without significant technical overhead. Unless you're building custom AI tools for a specific creative vertical, this is a skip — but it matters a lot for the developers building the tools creators will use.",
    ),
]

MISTRAL_8X24B_REVIEWS_000 = [
    Review(
        persona="Builder",
        score=88,
        verdict="ship",
        quote="The primitive is clean: a 141B sparse MoE transformer where you only pay compute for 39B parameters per forward pass, released under Apache 2.0 with weights you can actually download and run. The DX bet is correct — Mistral put the complexity in the architecture and kept the interface boring, meaning it drops into any vLLM or Ollama setup without ceremony. The moment of truth is spinning it up locally or via the API, and it survives that test because the HuggingFace integration is standard and the weights are real. The 'weekend alternative' here is just GPT-4 via API with no self-hosting option — this is categorically different because you own the weights. Specific ship decision: Apache 2.0 plus a genuinely efficient MoE architecture is not a wrapper, it's infrastructure.",
    ),
    Review(
        persona="Skeptic",
        score=82,
        verdict="ship",
        quote="Category is open-weight frontier models; direct competitors are LLaMA 3 70B and Qwen2-72B. The scenario where this breaks is enterprise fine-tuning at scale — the 39B active parameter count still demands serious GPU memory (you need at least 2xA100 80GB for comfortable inference), which eliminates the self-hosting pitch for everyone except well-resourced teams. The claim that kills this in 12 months isn't a competitor — it's Meta shipping LLaMA 4 with comparable MoE efficiency plus a bigger ecosystem. What would have to be true for me to be wrong: Mistral builds a fine-tuning and deployment layer on top that creates stickiness beyond the weights themselves, which the API pricing hints at. The Apache 2.0 release is a genuine differentiator against Llama's custom license, and that matters in regulated industries enough to ship.",
    ),
    Review(
        persona="Futurist",
        score=85,
        verdict="ship",
        quote="The thesis: by 2027, the dominant inference paradigm will be sparse-activation models where total parameter count is decoupled from compute cost, and whoever establishes the open-weight standard for that architecture wins the fine-tuning ecosystem. What has to go right is that GPU memory constraints don't dissolve faster than MoE adoption curves — if H100 memory doubles cheaply in 18 months, the efficiency argument weakens. The second-order effect is the one that matters: Apache 2.0 MoE weights shift fine-tuning leverage from API providers to the enterprises doing domain adaptation, which means Mistral is betting on a world where model customization is a core enterprise workflow, not a research curiosity. This tool is early on the open MoE trend — Mixtral 8x7B proved the architecture worked, 8x24B is the first credible frontier-scale version. The future state where this is infrastructure: every vertical SaaS company runs a fine-tuned MoE variant instead of calling OpenAI.",
    ),
    Review(
        persona="Founder",
        score=78,
        verdict="ship",
        quote="The buyer is the ML platform team at a mid-to-large enterprise who needs a commercially licensable model they can fine-tune without usage royalties — that's a real budget line (infrastructure + ML engineering) and Apache 2.0 is the unlock. The pricing architecture is smart: give away the weights to drive API adoption among teams who don't want to self-host, then monetize on compute. The moat question is the hard one — the weights are open, so the moat isn't the model itself, it's Mistral's ability to ship the next version before the community catches up and to build a managed inference layer with SLAs enterprises will pay for. What kills this business isn't a competitor's model, it's if Mistral can't out-iterate Meta on the open-weight roadmap while also building a credible cloud business. Specific ship decision: Apache 2.0 on a genuinely competitive model is a distribution strategy, not just a PR move — it creates real switching costs through fine-tuned derivatives that depend on Mistral's architecture.",
    ),
]

QUOTES_001 = [
    "40x memory reduction on MoE+LoRA is not a rounding error — this is the difference between needing a $20K H100 and a $1.5K consumer GPU. The Gemma 4 day-0 support means I can fine-tune Google's best open model the same day it drops. Immediate upgrade for any ML pipeline.",
    "The primitive here is clean: Apache 2.0 weights you can pull, fine-tune, and ship without a lawyer in the room. The DX bet is correct — put the weights on Hugging Face where every existing toolchain already knows how to consume them, no new SDK, no platform adoption required. The 8B hits the sweet spot for local inference on a single consumer GPU and the 70B sits in the range where you can run it on two A100s without exotic quantization gymnastics. The specific decision that earns the ship is the license choice: Apache 2.0 means you can embed this in a commercial product without a phone call to Mistral's sales team, which is the actual blocker most teams hit with open-weight models.",
    "The numbers sound impressive but ML framework benchmarks are notoriously cherry-picked for specific batch sizes and hardware configs. That said, Axolotl has a strong track record and these improvements are backed by code, not just marketing. Worth verifying on your specific hardware before assuming the headline numbers.",
    "Category is open-weight instruction-tuned LLMs; direct competitors are Llama 3.1 8B/70B, Qwen 2.5, and Gemma 3. The 'state-of-the-art at size class' claim is the one that needs scrutiny — Mistral has made this claim before and it's held up on some benchmarks, fallen apart on others, so I'd treat it as plausible until independent evals land. The scenario where this breaks: enterprise teams that need RLHF-heavy alignment and safety filtering, because Mistral's instruct tuning has historically been lighter-touch than Meta's. What kills this in 12 months isn't a competitor — it's that Meta ships Llama 4 at comparable quality with a larger ecosystem and Google embeds Gemma deeper into its toolchain. Mistral wins only if the Apache 2.0 positioning and European provenance become genuine differentiators for regulated industries.",
    "The democratization of fine-tuning MoE models changes the economics of specialized AI entirely. When a solo researcher can fine-tune a 30B sparse model on consumer hardware, the advantage of large labs with GPU clusters shrinks considerably. This is part of the broader forces making domain-specific models accessible to everyone.",
    "The thesis Mistral is betting on: by 2027, the default inference stack for production AI applications runs on self-hosted open-weight models, not closed APIs, because cost-per-token at scale and data residency requirements make calling OpenAI economically and legally untenable for most enterprise workloads. That's a falsifiable bet — it requires that fine-tuning tooling keeps pace with model capability gains and that regulatory pressure on data sovereignty actually materializes in procurement decisions. The second-order effect that matters here isn't the model itself — it's that Apache 2.0 at 70B quality normalizes the idea that foundation model weights are infrastructure, not products, which progressively hollows out the pricing power of every closed API provider. Mistral is riding the inference commoditization trend and they're on-time, not early — but the Apache license is a genuine strategic move, not trend-chasing.",
    "Fine-tuning frameworks are deeply in developer territory and hard to justify for creative workflows without significant technical overhead. Unless you're building custom AI tools for a specific creative vertical, this is a skip — but it matters a lot for the developers building the tools creators will use.",
    "The weights are free and that's the problem from a business standpoint. The buyer who uses the open-source weights pays Mistral nothing, and the buyer who uses the API is one pricing comparison away from switching to any other hosted inference provider running the same weights. The moat Mistral is building here is brand trust and European regulatory positioning — real, but thin. The specific business risk is that open-sourcing the 70B creates a ceiling on API revenue: any company at scale will self-host rather than pay per token, so Mistral's API business is structurally limited to developers who haven't yet hit the volume where self-hosting pencils out. To earn a ship as a business, Mistral needs a credible enterprise tier built on top of these weights — fine-tuning infrastructure, compliance tooling, SLAs — that commands margin the weights themselves cannot.",
]

QUOTES_002 = [
    "40x memory reduction on MoE+LoRA is not a rounding error — this is the difference between needing a $20K H100 and a $1.5K consumer GPU. The Gemma 4 day-0 support means I can fine-tune Google's best open model the same day it drops. Immediate upgrade for any ML pipeline.",
    "The primitive is clean: a 24B transformer you can pull from Hugging Face, quantize, and run on a single A10 or a well-specced workstation — no API keys, no usage limits, no cold starts. The DX bet Mistral made here is radical simplicity: Apache 2.0 license means you can embed this in commercial products without legal gymnastics, and the weights are just... there. The moment of truth is `huggingface-cli download mistralai/Mistral-3-Small`, and it survives that test better than almost anything at this weight class. What earns the ship is the license choice — Apache 2.0 at 24B is a genuine technical and legal gift to builders who need local inference without vendor dependency.",
    "The numbers sound impressive but ML framework benchmarks are notoriously cherry-picked for specific batch sizes and hardware configs. That said, Axolotl has a strong track record and these improvements are backed by code, not just marketing. Worth verifying on your specific hardware before assuming the headline numbers.",
    "Direct competitors here are Phi-4 (14B from Microsoft), Qwen2.5-14B, and Gemma 3 27B — this is a crowded weight class with serious players. The scenario where this breaks is fine-tuning at scale: 24B still requires meaningful GPU infrastructure, and teams with actual edge constraints (phones, microcontrollers) will hit memory walls fast despite the marketing. What could kill this in 12 months is Gemma or Phi shipping a tighter 24B with better instruction-following and Google/Microsoft distribution muscle — Mistral's differentiation is the Apache license and French regulatory positioning, not the benchmark numbers. Still, a freely licensed 24B that actually runs is categorically different from a gated API, and that earns it a ship.",
    "The democratization of fine-tuning MoE models changes the economics of specialized AI entirely. When a solo researcher can fine-tune a 30B sparse model on consumer hardware, the advantage of large labs with GPU clusters shrinks considerably. This is part of the broader forces making domain-specific models accessible to everyone.",
    "The thesis here is falsifiable: within 3 years, the majority of inference for non-frontier tasks will happen at the edge or on-prem, not in hyperscaler data centers — and the team betting on that needs Apache-licensed weights at a weight class that fits commodity hardware. The trend Mistral is riding is model compression and hardware democratization (Apple Silicon, consumer GPUs, Qualcomm NPUs): they are on-time, not early. The second-order effect that matters most isn't faster inference — it's the regulatory and data-sovereignty pressure that makes on-prem inference mandatory in healthcare, finance, and EU enterprise contexts. If that regulatory trend accelerates, Mistral 3 Small becomes the default choice for compliance-constrained deployments, not because it's the best model, but because it's the only one with a license that legal will actually sign off on.",
    "Fine-tuning frameworks are deeply in developer territory and hard to justify for creative workflows without significant technical overhead. Unless you're building custom AI tools for a specific creative vertical, this is a skip — but it matters a lot for the developers building the tools creators will use.",
    "The buyer here isn't a developer clicking 'download' — it's an enterprise IT team or an edge AI vendor who needs a commercially licensable base model they can fine-tune and ship in a product without Mistral's name on the invoice. Apache 2.0 is the moat: it creates switching costs not through lock-in but through ecosystem adoption, because every fine-tune and deployment built on these weights becomes a conversion funnel for Mistral's paid API and enterprise tier. The stress test that matters is whether Mistral can monetize the downstream commercial usage — open-weight is a distribution strategy, not a revenue strategy, and the business only works if enough of those edge deployments eventually need the managed API, fine-tuning support, or enterprise contracts. It's a viable bet, but it requires Mistral to win the platform layer above the weights before someone with deeper pockets does the same thing for free.",
]

BASE_DATE = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def _axolotl(reviews: list[Review], *, votes: bool) -> ToolEntry:
    return ToolEntry(
        name="Axolotl v0.16",
        tagline=AXOLOTL_TAGLINE,
        category="Developer Tools",
        ship_pct=75,
        community=None,
        pricing="Paid",
        pricing_detail="Open Source" if votes else None,
        description=AXOLOTL_DESCRIPTION,
        best_for=AXOLOTL_TAGLINE if votes else None,
        panel_verdict="ship" if votes else None,
        panel_ship=3 if votes else None,
        panel_skip=1 if votes else None,
        reviews=reviews,
    )


def _compact(quotes: list[str], side: int) -> list[Review]:
    """Compact pages: no persona labels, quotes alternate tool A / tool B."""
    return [Review(quote=quote) for quote in quotes[side::2]]


def comparison_000(published_at: datetime | None = None) -> Comparison:
    """Rich layout: personas, scores, decision table. Mistral wins 100% to 75%."""
    return Comparison(
        title="Axolotl v0.16 vs Mistral 8x24B Mixture-of-Experts",
        category="Developer Tools",
        slug="axolotl-v0-16-vs-mistral-8x24b-mixture-of-experts",
        published_at=published_at or BASE_DATE,
        tools=[
            _axolotl(list(AXOLOTL_REVIEWS_000), votes=True),
            ToolEntry(
                name="Mistral 8x24B Mixture-of-Experts",
                tagline="Open-weight sparse MoE model: 141B total, 39B active per pass",
                category="Developer Tools",
                ship_pct=100,
                community=None,
                pricing="Free",
                pricing_detail=(
                    "Free / Open-weight (Apache 2.0) — self-host or access via Mistral API (pay-per-token)"
                ),
                description=(
                    "Mistral AI has released Mistral 8x24B (Mixtral 8x22B) under the Apache 2.0 license, a "
                    "sparse mixture-of-experts model with 141B total parameters that activates roughly 39B "
                    "per forward pass."
                ),
                best_for="Open-weight sparse MoE model: 141B total, 39B active per pass",
                panel_verdict="ship",
                panel_ship=4,
                panel_skip=0,
                reviews=list(MISTRAL_8X24B_REVIEWS_000),
            ),
        ],
    )


def comparison_001(published_at: datetime | None = None) -> Comparison:
    """Compact layout, 75% each: a split decision."""
    return Comparison(
        title="Axolotl v0.16 vs Mistral 3 8B & 70B Instruct (Open Source)",
        category="Developer Tools",
        slug="axolotl-v0-16-vs-mistral-3-8b-70b-instruct-open-source",
        published_at=published_at or BASE_DATE - timedelta(days=1),
        tools=[
            _axolotl(_compact(QUOTES_001, 0), votes=False),
            ToolEntry(
                name="Mistral 3 8B & 70B Instruct (Open Source)",
                tagline="Apache 2.0 open-weight models that punch above their size class",
                category="Developer Tools",
                ship_pct=75,
                pricing="Free",
                description=(
                    "Mistral AI has released Mistral 3 in 8B and 70B parameter variants under the "
                    "permissive Apache 2.0 license."
                ),
                reviews=_compact(QUOTES_001, 1),
            ),
        ],
    )


def comparison_002(published_at: datetime | None = None) -> Comparison:
    """Compact layout: Mistral 3 Small wins 100% to 75%."""
    return Comparison(
        title="Axolotl v0.16 vs Mistral 3 Small (24B)",
        category="Developer Tools",
        slug="axolotl-v0-16-vs-mistral-3-small-24b",
        published_at=published_at or BASE_DATE - timedelta(days=2),
        tools=[
            _axolotl(_compact(QUOTES_002, 0), votes=False),
            ToolEntry(
                name="Mistral 3 Small (24B)",
                tagline="24B open-weight model that punches above its size at the edge",
                category="Developer Tools",
                ship_pct=100,
                pricing="Free",
                description=(
                    "Mistral 3 Small is a 24B parameter open-weight language model released under "
                    "Apache 2.0, designed for on-device and edge inference."
                ),
                reviews=_compact(QUOTES_002, 1),
            ),
        ],
    )


def seed_like() -> list[Comparison]:
    """The three seed comparisons, newest (000) first."""
    return [comparison_000(), comparison_001(), comparison_002()]


def five_comparisons() -> list[Comparison]:
    """A full issue: the three seeds plus two variants with other names and dates."""
    extra = []
    for n, base in enumerate((comparison_000(), comparison_002()), start=1):
        data = base.model_dump()
        data["title"] = base.title.replace("Axolotl v0.16", f"Unsloth 2026.{n}")
        data["slug"] = f"unsloth-2026-{n}-vs-{base.stable_slug.split('-vs-')[1]}"
        data["tools"][0]["name"] = f"Unsloth 2026.{n}"
        data["published_at"] = BASE_DATE - timedelta(days=2 + n)
        extra.append(Comparison.model_validate(data))
    return [*seed_like(), *extra]


def hostile_comparison(published_at: datetime | None = None) -> Comparison:
    """Markup and ampersands in every free-text field: they must render as text."""
    return Comparison(
        title='Tom & Jerry <AI> vs Bob\'s "Agent" & Co',
        category="Developer <Tools> & Co",
        slug="tom-and-jerry-vs-bobs-agent",
        published_at=published_at or BASE_DATE + timedelta(days=1),
        tools=[
            ToolEntry(
                name="Tom & Jerry <AI>",
                tagline="Cats & mice <b>bold</b>",
                ship_pct=60,
                pricing="Free",
                pricing_detail="Free & open <i>source</i>",
                best_for="R&D teams who write <code>",
                panel_ship=3,
                panel_skip=2,
                reviews=[
                    Review(
                        persona="Skeptic",
                        score=61,
                        verdict="ship",
                        quote="It works & it ships: <script>alert(1)</script> was printed as text.",
                    )
                ],
            ),
            ToolEntry(
                name='Bob\'s "Agent" & Co',
                ship_pct=40,
                pricing="Paid",
                community="12 ship & 3 skip",
                reviews=[
                    Review(persona="Builder", score=40, verdict="skip", quote="</mj-text></mjml> & <!-- x")
                ],
            ),
        ],
    )


def insert_comparisons(engine: Engine, comparisons: list[Comparison]) -> list[int]:
    """Store comparisons as catalog rows (what catalog.import_comparisons would do); their ids."""
    ids = []
    with session_scope(engine) as session:
        for comparison in comparisons:
            row = ComparisonRow(
                slug=comparison.stable_slug,
                title=comparison.title,
                category=comparison.category,
                url=comparison.url,
                source="tests",
                content_hash=comparison.content_hash(),
                data=comparison.model_dump(mode="json"),
                published_at=comparison.published_at or BASE_DATE,
            )
            session.add(row)
            session.flush()
            ids.append(row.id)
    return ids


ISSUE_DATE = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def issue_content_for(
    settings: Settings,
    comparisons: list[Comparison],
    *,
    issue_id: str = "2026-W48",
    issue_date: datetime = ISSUE_DATE,
) -> IssueContent:
    """An issue's content straight from comparisons (no database), as issues.py computes it."""
    summaries = summarise_issue(
        [(c, c.url or f"{settings.site_base}/comparisons/{c.stable_slug}") for c in comparisons]
    )
    return build_content(
        issue_id=issue_id,
        issue_date=issue_date,
        newsletter_name=settings.newsletter_name,
        archive_url=f"{settings.base_url}/issues/{issue_id}",
        summaries=summaries,
    )
