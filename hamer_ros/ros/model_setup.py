"""hand_mesh_node's pipeline from its parameters, and what to tell the user about the model:
loaded (mesh), not configured (joints-only, and where to get the weights), or configured but
unusable (a StartupError naming the fix, as `hamer-ros infer` refuses it)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..settings import pipeline_config
from ..weights import WEIGHTS_HINT
from .entry import StartupError
from .hints import ArgStyle

MODEL_HINT = "To get meshes set {checkpoint}. " + WEIGHTS_HINT


def build_pipeline(v: dict[str, Any]) -> Any:
    """The HandPipeline for the parameter values `v`; StartupError saying why it cannot be built."""
    # Imported here, not at module level: torch takes seconds to import, and a Ctrl-C during a
    # module-level import would end in a traceback before the process can handle it.
    from ..perception.pipeline import HandPipeline

    try:
        return HandPipeline(pipeline_config(v))
    except ImportError as e:
        raise StartupError(f"detector '{v['detector']}' cannot start: {e}. Or use detector:=fixed with rois "
                           f"(needs a checkpoint)") from None
    except (RuntimeError, ValueError, OSError) as e:
        raise StartupError(f"could not build the hand pipeline: {e}") from None


def report_model_state(p: Any, v: dict[str, Any], args: ArgStyle, log: Any) -> None:
    """Logs whether the mesh model is loaded and, without a checkpoint, how to get one; an engine
    fallback. Raises StartupError when a configured checkpoint could not be loaded."""
    if p.has_mesh:
        log.info(f"HaMeR model loaded from '{v['checkpoint']}' (mesh mode) on {p.device}")
        if getattr(p.engine, "fallback_reason", ""):
            log.warning(f"backend '{v['backend']}' not used, running '{p.backend}': {p.engine.fallback_reason}")
        return
    error = getattr(p, "model_error", "")
    ckpt = v["checkpoint"]
    if ckpt and not Path(ckpt).expanduser().is_file():
        # Say so directly: the loader may first complain about a file next to it.
        error = f"checkpoint file not found: looked for '{Path(ckpt).expanduser().absolute()}'"
    hint = MODEL_HINT.format(checkpoint=args.param("checkpoint", "<...>/hamer_ckpts/checkpoints/hamer.ckpt"))
    if error:
        # A checkpoint that was asked for and cannot be used is a configuration error, not a
        # quieter mode (joints-only is for no checkpoint at all).
        raise StartupError(f"HaMeR model NOT loaded (checkpoint: '{ckpt}', mano: '{v['mano']}'): {error}. "
                           f"Fix the path, or leave checkpoint empty for the joints-only mode. {hint}")
    if not ckpt:
        log.info(f"no checkpoint configured: joints-only mode (no mesh). {hint}")
    if v["detector"] == "fixed":
        log.info("detector 'fixed' without a HaMeR model: the landmark model finds the hand in each box "
                 "(joints only); a box with no hand in it gives none")
