// segkit/train/losses.hpp — the segmentation losses in one include: cross-entropy and OHEM
// cross-entropy (cross_entropy.hpp), binary cross-entropy with logits (binary_cross_entropy.hpp),
// sharing loss_state and the per-pixel math of loss_common.hpp. Each forward returns the loss
// as a float and fills a caller-owned loss_state; each backward adds upstream * dloss/dlogits.
#pragma once
#include "segkit/train/binary_cross_entropy.hpp"
#include "segkit/train/cross_entropy.hpp"
