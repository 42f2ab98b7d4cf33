// What every op of edgedet's OpenVINO opset shares (ov_quadraconv.cpp, ov_boxrpb.cpp):
// an fp32-only `evaluate` (F32Op), attributes visited from one name/value list
// (visit_all), and the pair of extensions that registers the op with ov::Core and maps the
// ONNX node of the edgedet domain onto it (op_extensions).
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "openvino/core/attribute_visitor.hpp"
#include "openvino/core/extension.hpp"
#include "openvino/core/op_extension.hpp"
#include "openvino/frontend/onnx/extension/op.hpp"
#include "openvino/op/op.hpp"

namespace edgedet {

// An op whose `evaluate` runs when every input is f32 (the kernels are fp32 only): it
// reports no evaluate for any other element type.
class F32Op : public ov::op::Op {
public:
    using ov::op::Op::Op;

    bool has_evaluate() const override {
        for (size_t i = 0; i < get_input_size(); ++i)
            if (get_input_element_type(i) != ov::element::f32)
                return false;
        return true;
    }
};

// visit_all(v, "strides", m_strides, "pads", m_pads, ...): each attribute once, in order.
inline bool visit_all(ov::AttributeVisitor&) {
    return true;
}

template <typename T, typename... Rest>
bool visit_all(ov::AttributeVisitor& v, const char* name, T& value, Rest&&... rest) {
    v.on_attribute(name, value);
    return visit_all(v, std::forward<Rest>(rest)...);
}

// Core extension (reads IRs holding the op) + ONNX frontend mapping of edgedet::<name>
// (attributes by name).
template <typename OpT>
std::vector<ov::Extension::Ptr> op_extensions(const char* name) {
    return {std::make_shared<ov::OpExtension<OpT>>(),
            std::make_shared<ov::frontend::onnx::OpExtension<OpT>>(name, "edgedet")};
}

}  // namespace edgedet
