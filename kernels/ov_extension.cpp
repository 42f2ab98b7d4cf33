// The one entry point of edgedet's OpenVINO extension library: every op of the edgedet
// opset (ov_quadraconv.cpp, ov_boxrpb.cpp), each as a Core op and an ONNX frontend mapping.

#include <vector>

#include "openvino/core/extension.hpp"

namespace edgedet {
std::vector<ov::Extension::Ptr> quadraconv_extensions();
std::vector<ov::Extension::Ptr> boxrpb_extensions();

static std::vector<ov::Extension::Ptr> all_extensions() {
    auto out = quadraconv_extensions();
    for (auto& e : boxrpb_extensions())
        out.push_back(e);
    return out;
}
}  // namespace edgedet

OPENVINO_CREATE_EXTENSIONS(edgedet::all_extensions());
