"""Training frameworks as data: the schema of ``frameworks/<id>.yaml`` and ``_common.yaml``,
their loading (through ``specs.registry``, the package's one file door) and a scenario's
``training.framework`` resolved to the facts the core uses (``Framework``).

A framework file holds sourced facts (code file + commit, or a docs URL, per entry): which
kernels run unfused in eager mode, the attention backend, eager vs torch.compile vs CUDA graphs,
the loss computation, FSDP's buffers, context parallelism, fp8 recipes, checkpointing policies.
``megatron-core`` is perfmodel's baseline and the framework of a plan that names none
(``plan.TrainPlan``): its operator list already is that stack's fused kernels, so of the cost
terms only those its file states apart from the base list apply (its fp8 scope, weight casts,
MoE host sync, capabilities). The cost terms built from the facts live in
``frameworks_costs``.
"""

from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from .errors import SpecError
from .frameworks_config import FRAMEWORK_NAMES, FrameworkConfig, MoeDispatcher
from .paths import data_dir
from .specs.common import Strict
from .specs.registry import load_file, load_named
from .specs.types import Bool, Float, Int

# -- _common.yaml ------------------------------------------------------------------------------


class Dispatch(Strict):
    """Host seconds per kernel (measured: benchmarks/framework_dispatch.py)."""

    forward_s: Float = Field(ge=0, le=1e-3)
    backward_s: Float = Field(ge=0, le=1e-3)
    compiled_s: Float = Field(ge=0, le=1e-3)
    cuda_graphs_s: Float = Field(ge=0, le=1e-3)
    source: str


class Ceiling(Strict):
    """Largest fraction of the dense peak a backend's kernel reaches (None: the profile's).

    ``by_seq_len``: a kernel measured only as forward + backward at a few sequence lengths
    (the fraction of the peak at each, query length = key length): both phases run at that
    fraction, interpolated linearly in log2(sequence length) and held at the end points
    (``fraction``); it replaces ``fwd`` / ``bwd``, which must then be absent."""

    fwd: Float | None = Field(default=None, gt=0, le=1)
    bwd: Float | None = Field(default=None, gt=0, le=1)
    by_seq_len: dict[Int, Float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_kind(self) -> "Ceiling":
        if self.by_seq_len and (self.fwd is not None or self.bwd is not None):
            raise SpecError("by_seq_len: give either fwd / bwd or by_seq_len, not both")
        for seq, frac in self.by_seq_len.items():
            if seq < 1 or not 0 < frac <= 1:
                raise SpecError(f"by_seq_len.{seq}: {frac}: a sequence length >= 1 and a "
                                "fraction of the peak in (0, 1]")
        return self

    def fraction(self, phase: str, seq_len: Any) -> Any:
        """The ceiling of one attention call (``phase`` fwd / bwd, its query length)."""
        if self.by_seq_len:
            seqs = sorted(self.by_seq_len)
            return np.interp(np.log2(np.maximum(np.asarray(seq_len, float), 1.0)),
                             np.log2(seqs), [self.by_seq_len[s] for s in seqs])
        return self.bwd if phase == "bwd" else self.fwd


class BackwardExtra(Strict):
    """Memory-bound kernels an attention backend runs around its backward kernel: HBM bytes
    per element of the local query (tokens x local heads x head dim) and how many kernels."""

    bytes_per_q_element: Float = Field(gt=0, le=256)
    kernels: Int = Field(ge=1, le=16)


class AttentionBackendSpec(Strict):
    kernel: str
    # by device architecture (DeviceSpec.architecture)
    ceilings: dict[str, Ceiling] = Field(default_factory=dict)
    same_as: str | None = None
    # the backend's own element-wise kernels of the backward (None: inside its one kernel)
    bwd_extra: BackwardExtra | None = None
    source: str


class Fp8Recipe(Strict):
    cast_bytes_per_element: Float = Field(gt=0, le=16)
    casts_per_operand: Int = Field(ge=1, le=4)
    # each cast runs its own amax pass over the operand before quantising (current / dynamic
    # scaling): timed at the profile's measured dynamic quantise rate (elementwise_rate.cast);
    # false: one pass (a scale known beforehand, or amaxes per block inside the cast kernel),
    # timed by its bytes on the memory curve (frameworks_costs.fp8_recipe_costs)
    amax_pass: Bool
    # block-scaled recipes (_common.yaml block_scaled_recipes): the stored format of every
    # quantised tensor (dtypes.TRAINING_BLOCK_SCALED), the copies each quantise writes (rowwise
    # and columnwise) and the dtype the GEMMs run at (peak and measured curve); None / 1 / fp8:
    # per-tensor fp8 (fp8_recipes)
    format: Literal["mxfp8", "nvfp4"] | None = None
    orientations: Int = Field(default=1, ge=1, le=2)
    gemm_dtype: Literal["fp8", "nvfp4"] = "fp8"
    source: str

    @model_validator(mode="after")
    def _cast_bytes_of_format(self) -> "Fp8Recipe":
        """A block-scaled recipe's cast moves the bf16 read (2 B), its amax pass (2 B) if any,
        and ``orientations`` copies in its format, block scales included: the stated bytes
        per element must be that arithmetic (dtypes.training_format_bytes)."""
        if self.format is None:
            return self
        from .dtypes import training_format_bytes

        want = (2.0 if self.amax_pass else 0.0) + 2.0 + self.orientations * \
            training_format_bytes(self.format)
        if abs(self.cast_bytes_per_element - want) > 1e-9:
            raise SpecError(f"cast_bytes_per_element: {self.cast_bytes_per_element} for format "
                            f"{self.format} x {self.orientations} orientations"
                            f"{' with an amax pass' if self.amax_pass else ''}; the arithmetic "
                            f"gives {want}")
        return self


class Decomposition(Strict):
    """An eager chain standing for one perfmodel kernel: its kernels and HBM bytes per output
    element (forward). Its backward: perfmodel's rule for memory-bound kernels (twice the
    forward's bytes), unless the chain's own backward is stated (``backward_bytes_per_element``
    and ``backward_kernels``, both or neither; frameworks_costs.chain_backward)."""

    kernels: Int = Field(ge=1, le=64)
    bytes_per_element: Float = Field(gt=0, le=256)
    backward_bytes_per_element: Float | None = Field(default=None, gt=0, le=256)
    backward_kernels: Int | None = Field(default=None, ge=1, le=64)
    source: str

    @model_validator(mode="after")
    def _backward_both(self) -> "Decomposition":
        if (self.backward_bytes_per_element is None) != (self.backward_kernels is None):
            raise SpecError("backward_bytes_per_element and backward_kernels: give both or "
                            "neither")
        return self


class CommonFacts(Strict):
    schema_version: Literal[1]
    dispatch: Dispatch
    attention_backends: dict[str, AttentionBackendSpec]
    fp8_recipes: dict[str, Fp8Recipe]
    # by training.precision (mxfp8, nvfp4): Transformer Engine's block-scaled recipes
    block_scaled_recipes: dict[str, Fp8Recipe] = Field(default_factory=dict)
    decompositions: dict[str, Decomposition]


# -- <framework>.yaml --------------------------------------------------------------------------


class Defaults(Strict):
    compile: Bool
    cuda_graphs: Bool
    attention_backend: str
    float8_recipe: str
    cp_load_balance: Bool
    # the stack has no setting that turns causal CP load balancing off: a scenario's
    # cp_load_balance override is refused rather than ignored
    cp_load_balance_fixed: Bool = False
    source: str


class LossFacts(Strict):
    decomposition: str | None  # key in decompositions; None: fused (perfmodel's base)
    compiled: Bool  # torch.compile covers the loss
    peak_bytes_per_logit: Float = Field(gt=0, le=64)  # alive at the loss's backward
    # under tensor parallelism the loss runs vocab-parallel (torch loss_parallel), whose
    # backward has its own peak per local logit (None: peak_bytes_per_logit at every TP)
    tp_peak_bytes_per_logit: Float | None = Field(default=None, gt=0, le=64)
    # metrics the trainer computes on every micro-batch's logits after the backward, without
    # gradient (Composer _train_microbatch -> _eval_train_metrics): one decomposition key per
    # metric, each an eager pass over the logits (none: the loss is the only pass)
    train_metrics: list[str] = Field(default_factory=list)
    source: str


class TpOverlapFacts(Strict):
    method: str
    requires_compile: Bool
    # TP collectives of a layer's backward (two of each kind under sequence parallelism) that
    # the overlap leaves on the critical path: async TP fuses a reduce-scatter only when a
    # GEMM produces its input, and the backward's input-gradient reduce-scatters follow the sum
    # of the Q/K/V (or gate/up) GEMMs' gradients
    backward_unfused: list[Literal["all_gather", "reduce_scatter"]] = Field(default_factory=list)
    source: str


class FsdpFacts(Strict):
    version: Int = Field(ge=1, le=3)
    prefetch_forward: Int = Field(ge=0, le=8)
    prefetch_backward: Int = Field(ge=0, le=8)
    reshard_after_forward: str
    all_gather_output_bytes_per_param: Float = Field(ge=0, le=8)
    unsharded_grad_bytes_per_param: Float = Field(ge=0, le=8)
    reduce_bytes_per_param: Float = Field(ge=0, le=8)
    root_gathered_in_forward: Bool
    # HBM bytes per (unsharded) parameter of the copy kernels around each all-gather and
    # reduce-scatter of a block
    copy_out_bytes_per_param: Float = Field(default=0.0, ge=0, le=16)
    reduce_copy_in_bytes_per_param: Float = Field(default=0.0, ge=0, le=16)
    # the reduce-scatter input copy is the gradient's cast to the reduce dtype, none when the
    # gradient already is in it (FSDP1 _post_backward_hook)
    reduce_copy_in_cast_only: Bool = False
    # FSDP1: the original parameters are torch.split views of the flat parameter, so autograd
    # concatenates the block's parameter gradients into the flat gradient (the split's
    # backward) every backward: HBM bytes per parameter of that copy, one kernel
    grad_flatten_bytes_per_param: Float = Field(default=0.0, ge=0, le=16)
    # FSDP1 _reduce_grad: the unsharded gradient divided in place by the predivide factor
    # before the reduce-scatter and the shard by the postdivide factor after it (each a read +
    # write in the reduce dtype, when its factor is > 1)
    grad_divides: Bool = False
    # FSDP1 pre_unshard with parameter mixed precision: the fp32 local shard cast into the
    # low-precision shard before each all-gather; HBM bytes per sharded parameter
    mp_shard_cast_bytes_per_param: Float = Field(default=0.0, ge=0, le=16)
    # ZeRO-3 under full activation recompute: the recomputed forward gathers the parameters
    # again (module pre-forward hooks fire in the recompute; DeepSpeed), and a parameter stays
    # gathered from its recompute to its backward only while the parameters used in between
    # are fewer than ``max_reuse_distance_params`` (stage3_max_reuse_distance; 0: always
    # released). False: one gather serves recompute and backward (FSDP's pre-backward unshard)
    recompute_regathers: Bool = False
    max_reuse_distance_params: Float = Field(default=0.0, ge=0)
    source: str


class CpMergeBytes(Strict):
    """HBM bytes per element of the element-wise work around the sub-attention calls of
    context parallelism, per ring step after the first (``*_step``) and once per pass
    (``*_fixed``): ``q`` per element of the local attention output (tokens x local heads x
    head dim), ``kv`` per element of the local K and V together as the ring passes them."""

    fwd_q_step: Float = Field(ge=0, le=256)
    fwd_q_fixed: Float = Field(ge=0, le=256)
    fwd_kv_step: Float = Field(ge=0, le=256)
    fwd_kv_fixed: Float = Field(ge=0, le=256)
    bwd_q_step: Float = Field(ge=0, le=256)
    bwd_q_fixed: Float = Field(ge=0, le=256)
    bwd_kv_step: Float = Field(ge=0, le=256)
    bwd_kv_fixed: Float = Field(ge=0, le=256)
    kernels_fwd_step: Int = Field(default=1, ge=0, le=64)
    kernels_bwd_step: Int = Field(default=1, ge=0, le=64)


class CpFacts(Strict):
    implementation: Literal["p2p_ring", "allgather", "a2a", "none"]
    accumulate_fp32: Bool
    # K and V reach the attention call already expanded to every query head (GQA repeated
    # before SDPA), so context parallelism gathers and rotates them at that width
    kv_at_query_heads: Bool = False
    # bytes per element of the dK / dV the backward passes around the ring
    grad_kv_bytes: Float = Field(default=2.0, gt=0, le=8)
    merge: CpMergeBytes | None = None  # None: merged inside the attention kernel (TE)
    # all-gather CP's backward buffers beside the gathered K/V at its peak: bytes per element
    # of the local query and per element of the local K and V together (0: none counted)
    bwd_bytes_q: Float = Field(default=0.0, ge=0, le=256)
    bwd_bytes_kv: Float = Field(default=0.0, ge=0, le=256)
    source: str


class PipelineFacts(Strict):
    """What the framework's pipeline runtime keeps on a stage beyond the activations of the
    micro-batches in flight (frameworks_costs.pipeline_buffer_bytes): every micro-batch's stage
    output kept for the whole step (on the last stage, the logits), one forward receive buffer
    per micro-batch on a non-first stage and one gradient receive buffer per micro-batch on a
    non-last stage, and the last stage's outputs concatenated once more at the step's end."""

    outputs_kept_all_step: Bool
    recv_buffers_per_microbatch: Bool
    merge_outputs: Bool
    source: str


class Described(Strict):
    implementation: str
    source: str


class OptimizerFacts(Strict):
    implementation: str
    # HBM bytes per local (sharded) parameter of one optimizer step as the framework runs it,
    # for the Adam family (None: perfmodel's fused-Adam count, ops.OPTIMIZER_BYTES): an eager
    # per-parameter loop reads and writes its temporaries; gradient clipping included
    adam_bytes_per_param: Float | None = Field(default=None, gt=0, le=256)
    source: str


class CheckpointingFacts(Strict):
    policies: str
    default: str
    # per-op selective checkpointing (recompute "op"): the TP collectives whose outputs the
    # policy saves; every other TP collective of the layer's forward runs again in the
    # backward's recompute (None: no facts, nothing charged)
    op_saved_collectives: list[Literal["all_gather", "reduce_scatter", "all_reduce"]] | None = None
    source: str


class Fp8WeightCastFacts(Strict):
    """When an fp8 run casts a GEMM's weight: ``per_microbatch`` (every forward, perfmodel's
    base charge) or ``per_step`` (the fp8 copy made in the step's first micro-batch is kept
    for the others, whose weights have not changed)."""

    when: Literal["per_step", "per_microbatch"]
    source: str


class Fp8QuantiseFacts(Strict):
    """How the framework's quantiser runs one recipe's cast of one tensor (frameworks/<id>.yaml
    ``fp8_quantise.<recipe>``, charged by frameworks_costs.fp8_recipe_costs and
    fp8_amax_reductions): kernels per quantise, the same for a GEMM input whose amax the
    preceding norm kernel already computed (``norm_fused_inputs``, forward GEMM names), whether
    a grouped GEMM's operands are quantised one expert at a time, the device architectures on
    which a quantise for the backward also writes the fp8 transpose (1 B per element), and
    whether under sequence parallelism each column-parallel input (forward) and row-parallel
    output gradient (backward) all-reduces its amax over the TP group before the cast and is
    quantised on the rank's rows before an fp8 all-gather."""

    kernels: Int = Field(ge=1, le=16)
    norm_fused_kernels: Int | None = Field(default=None, ge=1, le=16)
    norm_fused_inputs: list[str] = Field(default_factory=list)
    per_expert: Bool = False
    transpose_on: list[str] = Field(default_factory=list)
    amax_reduction: Bool = False
    # under sequence parallelism those same tensors (column-parallel inputs, row-parallel output
    # gradients) are quantised on this rank's rows before an fp8 all-gather, without the
    # transpose, which is made from the gathered fp8 tensor where ``transpose_on`` applies
    sp_quantise_before_gather: Bool = False
    # a block-scaled recipe's orientations (rowwise, columnwise) each quantised by a kernel of
    # its own that reads the 16-bit tensor again (torchao's MXFP8 dim0 / dim1 casts), not one
    # kernel writing both (Transformer Engine): frameworks_costs.fp8_recipe_costs
    separate_orientations: Bool = False
    source: str


class Fp8ScopeFacts(Strict):
    """Which GEMMs the framework's fp8 recipe runs in fp8: every GEMM of the transformer blocks
    except those of the weight classes in ``high_precision`` (ops.FP8_SCOPE_CLASSES: the LM
    head, the MoE router), which run in the 16-bit training dtype with no fp8 cast (a plain
    linear outside the fp8 modules, or a module the fp8 converter skips)
    (frameworks_costs.fp8_recipe_costs, ops.sixteen_bit_gemms)."""

    high_precision: list[Literal["lm_head", "router"]]
    source: str


class AllocatorFacts(Strict):
    expandable_segments: Bool
    source: str


class VersionFacts(Strict):
    """What differs at a later commit of the framework (selected by framework.version)."""

    loss_compiled: Bool | None = None
    source: str


class MoePermutation(Strict):
    """Row copies of a MoE layer's token dispatcher, forward (backward: each copy's mirror).
    ``input_permute``: the rank's tokens to top_k rows grouped by destination before the
    dispatch all-to-all (its inverse after the combine is perfmodel's ``moe.combine``);
    ``local_sort``: received rows regrouped by local expert and back (only with more than one
    local expert); ``fp8_padding``: with fp8 experts, the rows copied into per-expert padded
    segments and back."""

    input_permute: Bool
    local_sort: Bool
    # fp8 experts: each expert's rows padded to the fp8 row alignment before the expert GEMMs
    # and the output unpadded after them (a copy of the rows each way)
    fp8_padding: Bool = False
    # the received (or gathered) tokens copied into rows grouped by local expert after the
    # dispatch and back before the combine (flex / allgather dispatchers)
    received_permute: Bool = False
    # what the dispatch sends (parallel_comm.ep_layer_comm): "top_k" (one copy per routed
    # expert), "distinct" (one per destination rank, once per destination NVLink domain across
    # domains), "gather" (an all-gather of every token / reduce-scatter back)
    volume: Literal["top_k", "distinct", "gather"] = "top_k"
    # measured algorithm bandwidth (GB/s) of one dispatch and one combine across NVLink domains,
    # by device id and number of domains: tokens x destination domains (the sender's included)
    # x hidden x 2 B over the call's time (DeepEP tests/test_hybrid_ep.py); a 'distinct'
    # dispatch's cross-domain part takes at least that long (parallel_comm.ep_layer_comm
    # ``measured_rdma``)
    measured_rdma: dict[str, dict[Int, tuple[Float, Float]]] = Field(default_factory=dict)
    # the framework whose ``measured_rdma`` of the same dispatcher this one runs (NeMo runs
    # Megatron-Core's HybridEP): one table, read from there (frameworks_costs.
    # moe_dispatch_measured_rdma); None: this file's own table
    measured_rdma_from: str | None = None
    source: str

    @model_validator(mode="after")
    def _positive_bandwidths(self) -> "MoePermutation":
        if self.measured_rdma and self.measured_rdma_from is not None:
            raise ValueError("measured_rdma and measured_rdma_from: give one table, not both")
        for device, table in self.measured_rdma.items():
            for domains, bws in table.items():
                if domains < 2 or min(bws) <= 0:
                    raise ValueError(f"measured_rdma.{device}.{domains}: needs 2 or more NVLink "
                                     f"domains and positive (dispatch, combine) GB/s, got "
                                     f"{list(bws)}")
        return self


class ClampedGlu(Strict):
    """A routed expert's clamped GLU that the framework's model provider configures and runs
    as eager PyTorch ops ahead of its fused activation kernel (frameworks_costs.
    moe_dispatch_ops): Megatron-Core's weighted_bias_quick_geglu_impl with
    activation_func_clamp_value clamps the gate half (max only) and the linear half (min and
    max) and concatenates them, then calls the torch.compile'd activation."""

    # ModelSpec.family values (the HF model_type, '_' read as '-') whose provider sets the clamp
    families: tuple[str, ...]
    limit: Float = Field(gt=0)  # the provider's activation_func_clamp_value
    source: str


class RopeUnfused(Strict):
    """Rotary embeddings the framework runs as eager PyTorch ops for the model families its
    providers configure with a YaRN concentration factor (mscale) other than 1: Megatron-Core's
    apply_rotary_pos_emb then falls back from TE's fused RoPE, which takes no mscale, to
    _apply_rotary_pos_emb_bshd (frameworks_costs.rope_unfused_ops)."""

    # ModelSpec.family values (the HF model_type, '_' read as '-') whose provider sets it
    families: tuple[str, ...]
    mscale: Float = Field(gt=0)  # the provider's YaRN concentration factor
    source: str


class MoeFacts(Strict):
    """How the framework runs a rank's expert GEMMs: ``grouped_kernel`` (one grouped-GEMM
    kernel over the local experts: the profile's measured MoE tables) or ``per_expert`` (one
    dense GEMM per expert, e.g. Transformer Engine's GroupedLinear on its default cuBLAS path:
    each expert's GEMM on the dense curve at its own rows)."""

    grouped_gemm: Literal["grouped_kernel", "per_expert"]
    source: str
    # the token dispatcher's memory-bound row copies around the all-to-all
    # (frameworks_costs.moe_dispatch_ops); None: only perfmodel's moe.combine
    permutation: MoePermutation | None = None
    # the dispatcher a run uses unless the scenario says (training.framework.moe_dispatcher);
    # ``permutation`` holds the alltoall dispatcher's facts, ``dispatchers`` the others'
    dispatcher: Literal["alltoall", "allgather", "flex-deepep", "flex-hybridep"] = "alltoall"
    dispatchers: dict[str, MoePermutation] = Field(default_factory=dict)
    # how a routed expert's output-projection bias is added: "fused" (in perfmodel's expert
    # GEMM / combine) or "per_expert_eager" (per local expert t + b * p, then a concat)
    expert_bias: Literal["fused", "per_expert_eager"] = "fused"
    # the host waits for the GPU once per MoE layer forward to read the split sizes
    # (Megatron-Core's dispatcher / TEGroupedMLP; training.moe_dispatch_sync); "none": no sync
    host_sync: Literal["per_layer_forward", "none"] = "none"
    # eager clamp of the expert GLU for the model families the provider clamps; None: none
    clamped_glu: ClampedGlu | None = None


class EagerBackward(Strict):
    """Backward-only kernels eager autograd runs that perfmodel's backward of the forward
    operators (ops.backward) does not derive (frameworks_costs.backward_extra_ops):
    ``bias_grad_reduction``: each biased Linear's bias gradient as a separate reduction of
    its output gradient (autograd's sum_to of addmm's bias gradient);
    ``qkv_split_backward_copy``: Q, K and V are split views of the fused QKV output and the
    split's backward concatenates their gradients (a copy of the QKV width)."""

    bias_grad_reduction: Bool = False
    qkv_split_backward_copy: Bool = False
    source: str


class ScoreChain(Strict):
    """The unfused attention's element-wise work on the scores as separate eager kernels
    (frameworks_costs.eager_forward_ops), where perfmodel's flash_attention-false path counts one
    fused scale-mask-softmax kernel (ops.unfused_attention_ops item 2): passes over the whole
    (masked) score matrix, each reading or writing every score once in the activation dtype,
    forward and backward, and the kernels each pass runs (small ones on the mask included)."""

    fwd_passes: Float = Field(gt=0, le=64)
    fwd_kernels: Int = Field(ge=1, le=64)
    bwd_passes: Float = Field(gt=0, le=64)
    bwd_kernels: Int = Field(ge=1, le=64)
    source: str


class EagerForward(Strict):
    """Forward kernels of an eager stack that perfmodel's fused operator list folds away
    (frameworks_costs.eager_forward_ops): ``bias_add``: a biased Linear's bias added by its own
    kernel after the GEMM (read and write of the output); ``residual_dropout``: the hidden
    dropout before each residual add as its own kernel (read, write and a 1-byte mask; its
    backward the same bytes), when the run trains with dropout; ``score_chain``: the attention
    scores' scale / mask / softmax as separate kernels (unfused attention only)."""

    bias_add: Bool = False
    residual_dropout: Bool = False
    score_chain: ScoreChain | None = None
    source: str


class GradAccumulationFacts(Strict):
    """How an eager data-parallel stack accumulates and reduces gradients without perfmodel's
    fused accumulation (frameworks_costs.grad_accumulation_ops): ``bytes_per_param``: autograd's
    in-place add of each later micro-batch's weight gradient into the parameter's ``.grad``
    (AccumulateGrad ``grad += new``), HBM bytes per parameter; ``step_bytes_per_param``: the
    per-step kernels of an unbucketed gradient all-reduce (flatten, divide, copy back), HBM
    bytes per parameter, when data parallelism is on."""

    bytes_per_param: Float = Field(ge=0, le=64)
    step_bytes_per_param: Float = Field(default=0.0, ge=0, le=64)
    # the gradients are zeroed rather than set to None before the step (zero_grad without
    # set_to_none), so the first micro-batch's gradient is added in place too
    accumulates_first: Bool = False
    source: str


class ZeroStageSupport(Strict):
    """One data-parallel sharding stage as the framework offers it, in ZeRO's numbering
    (Rajbhandari et al. 2020: 0 replicated, 1 optimizer states sharded, 2 and gradients,
    3 and parameters): how a run selects it and whether it runs with pipeline parallelism
    (pp > 1), with the interleaved schedule (vp > 1), with expert parallelism (ep > 1) and with
    a mixture-of-experts model at all. Checked by ``plan.capability_rules``
    for a scenario and applied as masks by the plan search."""

    setting: str  # the framework's own switch, e.g. --data-parallel-sharding-strategy optim_grads
    pp: Bool
    vp: Bool
    # ZeRO-3 under pp > 1: parameters re-gathered every micro-batch (true), or kept gathered,
    # with unsharded gradients, from a step's first forward to its last backward (false: the
    # model states of ZeRO-1, one gather + one reduce-scatter a step). None: not applicable
    reshard_under_pp: Bool | None = None
    # the stage's wrapper runs only with data parallelism as the plan's one parallel dimension
    # (refused with dp > 1 beside tp / cp / pp > 1); with dp = 1 the framework applies no
    # wrapper, so the stage sets no rule (torchtitan's DDP)
    sole_dimension: Bool = False
    # when a gradient-sharding stage (2) reduce-scatters: once a step, the gradients having
    # accumulated whole ("step"), or after every micro-batch's backward, the stage keeping
    # only its shard ("microbatch"; parallel_comm.dp_step_comm)
    grad_reduction: Literal["step", "microbatch"] = "step"
    limits: str | None = None  # what the framework's code says where it refuses a combination
    # whether the stage runs expert parallelism (ep > 1); false: the framework refuses it, and
    # ``ep_limits`` quotes where (DeepSpeed's engine asserts "MoE not supported with Stage 3")
    ep: Bool = True
    ep_limits: str | None = None
    # whether the stage runs a mixture-of-experts model at all (any ep); false: the framework
    # builds every MoE layer as a module its engine refuses at this stage, and ``moe_limits``
    # quotes where (Megatron-DeepSpeed's MoE layers are deepspeed.moe.layer.MoE whatever their
    # ep_size, and DeepSpeed's ZeRO-3 asserts "MoE not supported with Stage 3"). Implies ep false
    moe: Bool = True
    moe_limits: str | None = None
    source: str

    @model_validator(mode="after")
    def _no_ep_without_moe(self) -> "ZeroStageSupport":
        if not self.moe and self.ep:
            raise SpecError("moe: false runs no expert parallelism either: set ep: false")
        return self


class Capabilities(Strict):
    """What the framework can run (refused otherwise, never remapped): its ZeRO stages; a
    stage absent is not offered."""

    zero_stages: dict[Literal[0, 1, 2, 3], ZeroStageSupport] = Field(min_length=1)

    @model_validator(mode="after")
    def _reduction_only_for_stage_2(self) -> "Capabilities":
        for z, stage in self.zero_stages.items():
            if stage.grad_reduction == "microbatch" and z != 2:
                raise SpecError(f"capabilities.zero_stages.{z}.grad_reduction: only stage 2 "
                                "chooses (ZeRO-1 accumulates whole gradients; ZeRO-3 "
                                "reduce-scatters every micro-batch by definition)")
        return self


class MoeA2aOverlapFacts(Strict):
    """How the framework hides a MoE layer's expert all-to-all (dispatch / combine) of one
    micro-batch behind the compute of another (``parallelism.moe_a2a_overlap``;
    parallel_comm.ep_a2a_overlap): ``combined_1f1b`` (Megatron-Core: one micro-batch's forward
    beside another's backward inside the 1F1B / interleaved schedule; pp > 1 needs virtual
    stages) or ``dualpipev`` (the forward and backward chunks DeepSeek's DualPipeV schedule
    runs side by side: only under ``parallelism.schedule: dualpipev``). ``recompute``: the
    activation recompute the overlap composes with (``no_full``: any but whole-layer
    recompute; ``none``: no activation checkpointing at all)."""

    schedule: Literal["combined_1f1b", "dualpipev"]
    flag: str  # the framework's switch, as a user sets it
    since: str  # the commit / release that introduced it
    recompute: Literal["no_full", "none"]
    # the model precisions (training.precision) and the MoE token dispatchers
    # (training.framework.moe_dispatcher) the framework's checks accept with the overlap on;
    # None: the framework states no such check (plan.overlap_rules reads both)
    precisions: list[Literal["fp32", "tf32", "fp16", "bf16", "fp8", "mxfp8", "nvfp4"]] | None = None
    dispatchers: list[MoeDispatcher] | None = None
    source: str


class DualPipeVFacts(Strict):
    """The framework runs DeepSeek's DualPipeV pipeline schedule (two model chunks per rank in
    a V; pipeline.dualpipev_bubble, ``parallelism.schedule: dualpipev``)."""

    flag: str
    since: str
    source: str


class Fact(Strict):
    topic: str
    fact: str
    source: str


class FrameworkSpec(Strict):
    """One framework file (frameworks/<id>.yaml)."""

    schema_version: Literal[1]
    id: str
    name: str
    version: str
    sources: dict[str, str] = Field(min_length=1)
    defaults: Defaults
    eager_unfused: dict[str, str]  # perfmodel kernel kind -> decomposition
    compiled_unfused: dict[str, str]
    attention_layout_copies: Bool
    loss: LossFacts
    tp_overlap: TpOverlapFacts
    fsdp: FsdpFacts | None
    cp: CpFacts
    pipeline: PipelineFacts | None = None  # None: no buffers beyond the in-flight activations
    optimizer: OptimizerFacts
    activation_checkpointing: CheckpointingFacts
    allocator: AllocatorFacts
    # None: no fact, the base charge (a weight cast every micro-batch)
    fp8_weight_cast: Fp8WeightCastFacts | None = None
    # recipe name (a key of _common.yaml fp8_recipes) -> how this framework's quantiser runs it;
    # absent: one kernel per cast, no transpose copy, no amax reduction
    fp8_quantise: dict[str, Fp8QuantiseFacts] = Field(default_factory=dict)
    # None: no fact, every GEMM in fp8 (the base charge)
    fp8_scope: Fp8ScopeFacts | None = None
    moe: MoeFacts | None = None  # None: a grouped kernel (the profile's MoE tables)
    rope_unfused: RopeUnfused | None = None  # None: RoPE as perfmodel's one fused kernel
    eager_backward: EagerBackward | None = None  # None: no backward-only eager kernels
    eager_forward: EagerForward | None = None  # None: no forward kernels beyond the base list
    grad_accumulation: GradAccumulationFacts | None = None  # None: fused (perfmodel's base)
    # None: the framework has no EP all-to-all / compute overlap in training
    moe_a2a_overlap: MoeA2aOverlapFacts | None = None
    dualpipev: DualPipeVFacts | None = None  # None: no DualPipeV schedule
    facts: list[Fact] = Field(default_factory=list)
    versions: dict[str, VersionFacts] = Field(default_factory=dict)
    capabilities: Capabilities


@cache
def common_facts() -> CommonFacts:
    return load_file(CommonFacts, data_dir("frameworks") / "_common.yaml")


def block_scaled_recipe(precision: str) -> Fp8Recipe | None:
    """The block-scaled training recipe ``training.precision`` names (frameworks/_common.yaml
    ``block_scaled_recipes``: mxfp8, nvfp4), None for every other precision (fp8 reads the
    framework's ``float8_recipe``)."""
    return common_facts().block_scaled_recipes.get(precision)


@cache
def framework_spec(framework_id: str) -> FrameworkSpec:
    """The facts of one framework, checked against ``_common.yaml``'s keys."""
    if framework_id not in FRAMEWORK_NAMES:
        raise SpecError(f"training.framework: unknown framework {framework_id!r}; valid: "
                        f"{', '.join(FRAMEWORK_NAMES)}")
    path = data_dir("frameworks") / f"{framework_id}.yaml"
    spec = load_named(FrameworkSpec, path.parent, framework_id)
    common = common_facts()
    for key in [*spec.eager_unfused.values(), *spec.compiled_unfused.values(),
                *([spec.loss.decomposition] if spec.loss.decomposition else []),
                *spec.loss.train_metrics]:
        if key not in common.decompositions:
            raise SpecError(f"{path}: decomposition {key!r} is not in _common.yaml; valid: "
                            f"{', '.join(common.decompositions)}")
    for key, table in ((spec.defaults.attention_backend, common.attention_backends),
                       (spec.defaults.float8_recipe, common.fp8_recipes),
                       *((k, {**common.fp8_recipes, **common.block_scaled_recipes})
                         for k in spec.fp8_quantise)):
        if key not in table:
            raise SpecError(f"{path}: {key!r} is not in _common.yaml; valid: {', '.join(table)}")
    for name, disp in (spec.moe.dispatchers if spec.moe else {}).items():
        other = disp.measured_rdma_from
        if other is None:
            continue
        theirs = framework_spec(other).moe if other != framework_id else None
        if theirs is None or not getattr(theirs.dispatchers.get(name), "measured_rdma", None):
            raise SpecError(f"{path}: moe.dispatchers.{name}.measured_rdma_from: {other!r} has "
                            f"no measured_rdma table for {name}")
    stage3 = spec.capabilities.zero_stages.get(3)
    if stage3 is not None and stage3.pp and stage3.reshard_under_pp is None:
        raise SpecError(f"{path}: capabilities.zero_stages.3.reshard_under_pp: ZeRO-3 with "
                        "pipeline parallelism must say whether it re-gathers parameters every "
                        "micro-batch (true) or keeps them gathered for the step (false)")
    return spec


@dataclass(frozen=True)
class Framework:
    """A scenario's framework with its overrides applied: what the cost terms read."""

    id: str
    spec: FrameworkSpec
    compile: bool
    cuda_graphs: bool
    attention_backend: str
    float8_recipe: str
    cp_load_balance: bool
    # the framework's cp.implementation or the scenario's override; "none" (the framework has
    # no context parallelism) refuses cp > 1 (plan.capability_rules)
    cp_implementation: str = "p2p_ring"
    # the MoE token dispatcher (moe.dispatcher or the scenario's moe_dispatcher override)
    moe_dispatcher: str = "alltoall"

    @property
    def baseline(self) -> bool:
        """perfmodel's operator list is this stack as it is (megatron-core)."""
        return self.id == "megatron-core"

    @property
    def unfused(self) -> dict[str, Decomposition]:
        """Kernel kinds that run as chains of separate kernels in this run's mode."""
        table = self.spec.compiled_unfused if self.compile else self.spec.eager_unfused
        return {kind: common_facts().decompositions[key] for kind, key in table.items()}

    @property
    def loss_decomposition(self) -> Decomposition | None:
        key = self.spec.loss.decomposition
        if key is None or (self.compile and self.spec.loss.compiled):
            return None
        return common_facts().decompositions[key]

    @property
    def train_metric_decompositions(self) -> list[Decomposition]:
        """The eager passes over the logits of the trainer's per-micro-batch metrics."""
        return [common_facts().decompositions[key] for key in self.spec.loss.train_metrics]

    @property
    def dispatch_s(self) -> tuple[float, float]:
        """(forward, backward) host seconds per kernel in this run's execution mode."""
        d = common_facts().dispatch
        if self.cuda_graphs:
            return d.cuda_graphs_s, d.cuda_graphs_s
        if self.compile:
            return d.compiled_s, d.compiled_s
        return d.forward_s, d.backward_s

    def attention_ceiling(self, architecture: str | None) -> Ceiling:
        """The run's attention backend's ceiling on ``architecture`` (_common.yaml's; none on
        an architecture it does not list)."""
        backends = common_facts().attention_backends
        backend = backends[self.attention_backend]
        if backend.same_as:
            backend = backends[backend.same_as]
        return backend.ceilings.get(architecture or "", Ceiling())

    @property
    def attention_bwd_extra(self) -> BackwardExtra | None:
        """The backend's element-wise kernels around its backward (None: none)."""
        backends = common_facts().attention_backends
        backend = backends[self.attention_backend]
        if backend.same_as:
            backend = backends[backend.same_as]
        return backend.bwd_extra

    @property
    def fp8(self) -> Fp8Recipe:
        return common_facts().fp8_recipes[self.float8_recipe]

    @property
    def fp8_quantise(self) -> Fp8QuantiseFacts | None:
        """How this framework's quantiser runs the run's recipe (None: no facts)."""
        return self.spec.fp8_quantise.get(self.float8_recipe)

    def recipe_for(self, precision: str) -> tuple[str, Fp8Recipe]:
        """(name, facts) of the quantisation recipe a run at ``precision`` uses: the block-scaled
        recipe of that name (training.precision mxfp8 / nvfp4, ``block_scaled_recipe``), else
        the framework's fp8 recipe (``float8_recipe``)."""
        block = block_scaled_recipe(precision)
        return (precision, block) if block is not None else (self.float8_recipe, self.fp8)

    def describe(self) -> dict:
        """The settings in force (prediction breakdown)."""
        return {"name": self.id, "version": self.spec.version, "compile": self.compile,
                "cuda_graphs": self.cuda_graphs, "attention_backend": self.attention_backend,
                "float8_recipe": self.float8_recipe, "cp_load_balance": self.cp_load_balance,
                "cp_implementation": self.cp_implementation,
                "moe_dispatcher": self.moe_dispatcher}


def resolve_framework(config: FrameworkConfig | None) -> Framework:
    """A scenario's ``training.framework`` (None: megatron-core) as the facts in force."""
    config = config or FrameworkConfig()
    spec = framework_spec(config.canonical)
    if config.version is not None:
        if config.version not in spec.versions:
            raise SpecError(f"training.framework.version: {spec.id} has no version "
                            f"{config.version!r}; valid: "
                            f"{', '.join(spec.versions) or 'none (only the base commit)'}")
        later = spec.versions[config.version]
        if later.loss_compiled is not None:
            spec = spec.model_copy(update={"loss": spec.loss.model_copy(
                update={"compiled": later.loss_compiled})})
    d = spec.defaults
    compile_ = d.compile if config.compile is None else config.compile
    dispatcher = config.moe_dispatcher or (spec.moe.dispatcher if spec.moe else "alltoall")
    if dispatcher != "alltoall" and (spec.moe is None or dispatcher not in spec.moe.dispatchers):
        known = ["alltoall", *(spec.moe.dispatchers if spec.moe else {})]
        raise SpecError(f"training.framework.moe_dispatcher: {spec.id} has no facts for "
                        f"{dispatcher!r}; valid: {', '.join(known)}")
    if (d.cp_load_balance_fixed and config.cp_load_balance is not None
            and config.cp_load_balance != d.cp_load_balance):
        raise SpecError(f"training.framework.cp_load_balance: {spec.id} always "
                        f"{'load-balances' if d.cp_load_balance else 'splits'} causal context "
                        f"parallelism and has no setting to change it (frameworks/{spec.id}"
                        ".yaml defaults.cp_load_balance_fixed, with its source); "
                        "remove cp_load_balance or pick a framework that has one (torchtitan)")
    return Framework(
        id=spec.id, spec=spec, compile=compile_,
        cuda_graphs=d.cuda_graphs if config.cuda_graphs is None else config.cuda_graphs,
        attention_backend=config.attention_backend or d.attention_backend,
        float8_recipe=config.float8_recipe or d.float8_recipe,
        cp_load_balance=(d.cp_load_balance if config.cp_load_balance is None
                         else config.cp_load_balance),
        cp_implementation=config.cp_implementation or spec.cp.implementation,
        moe_dispatcher=dispatcher)
