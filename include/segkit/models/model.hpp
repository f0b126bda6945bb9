// segkit/models/model.hpp — the contract between a segmentation model and the tools that
// train, evaluate and run it (train/trainer.hpp, eval/inference.hpp, the examples).
// Provides: models::loss_terms, models::model_cost, and the description of the model concept.
//
// A segkit model is a class (not a graph type: it wires one or more bound graphs and its
// losses by hand) with
//   explicit Model(int num_classes, uint64_t seed = 0);        // classes are a runtime value
//   shape setup(const shape& images);                  // [N, 3, H, W]; may be called again
//                                                      // for another shape (evaluation)
//   const shape& input_shape() const;                  // the shape of the last setup
//   const tensor<float, D>& forward(const tensor<float, D>& images);   // logits [N, K, H, W]
//                                                      // at the input's resolution
//   loss_terms forward_backward(const tensor<float, D>& images,
//                               const tensor<int32_t, D>& labels);  // [N, H, W], 255 = ignore
//                                                      // forward, every loss, backward; ADDS
//                                                      // into parameter gradients
//   void zero_grad();  void train();  void eval();  bool training() const;
//   template <class F> void visit_parameters(const std::string& prefix, F&&);  // PyTorch names
//   template <class F> void visit_buffers(const std::string& prefix, F&&);
//   model_cost cost() const;                            // of the last setup, per forward
//   std::string name() const;                           // "fcn-resnet18", ...
// Guarantees expected of every model: forward and forward_backward allocate nothing after
// setup; the parameters and buffers visited are exactly what a checkpoint holds.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace segkit::models {

// The named terms of one training step's loss, and their weighted sum (what backward used).
struct loss_terms {
  std::vector<std::pair<std::string, double>> terms;  // e.g. {"ce", 0.71}, {"aux_ce", 0.80}
  double total = 0;
};

// Cost of one forward at the last setup shape. MACs count multiply-adds of convolutions,
// matrix products and attention (fvcore's convention); FLOPs = 2 * MACs.
struct model_cost {
  int64_t parameters = 0;
  int64_t macs = 0;
};

}  // namespace segkit::models
