"""Painting: `paint(images, ...)` and what it returns, for `sgfast paint` and the Python API.

Modules, imports running one way (each imports only those listed before it):
  result          PaintResult, PaintError
  inputs          images, masks and boxes from paths, arrays and tensors
  weights         the shipped default weights, load_models (actor, renderer, Ψ, expert, ops backend)
  semantics       S, box and G per image (Ψ or given masks, the expert's guided backprop)
  instances       Eq. 16's instance choice with the min_gain rule, the gate of every stroke
  agent_painter   the agent's step loop (neural renderer + composite)
  divide_painter  --divide D: the agent with grid refinement
  optimize_painter --method optimize: strokes optimised directly
  rerender        exact re-rendering of a painting's strokes at any size
  exact_optimizer  coarse-to-fine stroke optimisation through render_strokes
  photo_semantics  S and G at a photo's own shape (--mask, Ψ / torchvision, weight-free defaults)
  exact_painter    --method exact (the default): photos at their own shape and size
  facade          paint(): checks, batching, dispatch to the methods above
  export          PNG, GIF, MP4, strokes JSON and SVG of a painting
"""
from sgfast.paint.facade import BG_GATES, paint  # noqa: F401
from sgfast.paint.inputs import mask_box, read_box  # noqa: F401
from sgfast.paint.rerender import render_exact, result_exact  # noqa: F401
from sgfast.paint.result import PaintError, PaintResult  # noqa: F401
from sgfast.paint.semantics import semantics  # noqa: F401
from sgfast.paint.weights import (DEFAULT_ACTOR, DEFAULT_EXPERT, DEFAULT_RENDERER, DEFAULT_SEGMENTER,  # noqa: F401
                                  Models, load_models)
