#!/usr/bin/env python3
"""Exports the models of bench/gpu-models.sh with PyTorch (the GPU machine has it), each as
OUT/<name>/model.onnx plus OUT/<name>/sizes.txt: three lines of kiln run --shape flags (the
three input sizes the model is checked at) and OUT/<name>/profile.txt: the kiln build
--profile flags of a profile that covers them.

Three networks are defined here, each exercising what failed on the GPU (issue 10):
  text_det   a DB-style text detector: strided conv backbone, an FPN neck upsampling with
             ConvTranspose and bilinear Resize to the lateral's own (dynamic) size, a head of
             ConvTranspose layers ending in HardSigmoid; dynamic H and W
  crnn_rec   a CRNN-style recognizer: conv stages whose pooling collapses H (32 -> 1) with
             (2, 1) windows while W stays variable, then per-column classes (LogSoftmax)
  yolo_nms   a YOLO-style detector with NonMaxSuppression inside the graph (torchvision's nms),
             returning the kept boxes and scores; dynamic H and W
The others come from ../shared/tools/export_models.py (its MODELS table): resnet50, bert_base,
efficientnet_b0, vit_b_16. Weights are random but seeded; BatchNorm statistics randomized.

usage: gpu_models.py EXPORT_MODELS.py OUT_DIR NAME...
"""
import functools, importlib.util, os, sys

import torch, torch.nn as nn, torch.nn.functional as F
import torchvision

torch.manual_seed(0)
# PyTorch 2.11's default (dynamo) exporter fails on some of these; the TorchScript one does not.
torch.onnx.export = functools.partial(torch.onnx.export, dynamo=False)
torch.backends.mha.set_fastpath_enabled(False)


def cbr(i, o, k=3, st=1):
    return nn.Sequential(nn.Conv2d(i, o, k, st, k // 2, bias=False), nn.BatchNorm2d(o), nn.ReLU())


class TextDet(nn.Module):
    def __init__(s, w=16):
        super().__init__()
        s.s1 = nn.Sequential(cbr(3, w, 3, 2), cbr(w, w))            # /2
        s.s2 = nn.Sequential(cbr(w, 2 * w, 3, 2), cbr(2 * w, 2 * w))  # /4
        s.s3 = nn.Sequential(cbr(2 * w, 4 * w, 3, 2), cbr(4 * w, 4 * w))  # /8
        s.s4 = nn.Sequential(cbr(4 * w, 8 * w, 3, 2), cbr(8 * w, 8 * w))  # /16
        s.s5 = nn.Sequential(cbr(8 * w, 8 * w, 3, 2), cbr(8 * w, 8 * w))  # /32
        s.lat = nn.ModuleList([nn.Conv2d(c, 4 * w, 1) for c in (2 * w, 4 * w, 8 * w, 8 * w)])
        s.up5 = nn.ConvTranspose2d(4 * w, 4 * w, 2, 2)
        s.head = nn.Sequential(cbr(4 * w, w), nn.ConvTranspose2d(w, w, 2, 2), nn.BatchNorm2d(w), nn.ReLU(),
                               nn.ConvTranspose2d(w, 1, 2, 2), nn.Hardsigmoid())

    def forward(s, x):
        c2 = s.s2(s.s1(x)); c3 = s.s3(c2); c4 = s.s4(c3); c5 = s.s5(c4)
        l2, l3, l4, l5 = (m(c) for m, c in zip(s.lat, (c2, c3, c4, c5)))
        p4 = l4 + s.up5(l5)
        p3 = l3 + F.interpolate(p4, size=l3.shape[2:], mode="bilinear", align_corners=False)
        p2 = l2 + F.interpolate(p3, size=l2.shape[2:], mode="bilinear", align_corners=False)
        return s.head(p2)


class CRNN(nn.Module):
    def __init__(s, w=16, classes=97):
        super().__init__()
        s.body = nn.Sequential(
            cbr(3, w), nn.MaxPool2d(2, 2),                    # 16 x W/2
            cbr(w, 2 * w), nn.MaxPool2d(2, 2),                # 8 x W/4
            cbr(2 * w, 4 * w), cbr(4 * w, 4 * w), nn.MaxPool2d((2, 1), (2, 1)),  # 4
            cbr(4 * w, 8 * w), nn.MaxPool2d((2, 1), (2, 1)),  # 2
            cbr(8 * w, 8 * w), nn.MaxPool2d((2, 1), (2, 1)))  # 1
        s.fc = nn.Linear(8 * w, classes)

    def forward(s, x):
        f = s.body(x).squeeze(2).permute(0, 2, 1)  # [N, W/4, C]
        return F.log_softmax(s.fc(f), dim=-1)


class YoloNMS(nn.Module):
    def __init__(s, det):
        super().__init__()
        s.det = det

    def forward(s, x):
        y = s.det(x)[0]                  # [4 + classes, anchors]
        c, wh = y[:2].T, y[2:4].T.abs()
        boxes = torch.cat([c - wh / 2, c + wh / 2], 1)
        scores = y[4:].max(0).values
        keep = torchvision.ops.nms(boxes, scores, 0.45)[:100]
        return boxes[keep], scores[keep]


def main():
    spec = importlib.util.spec_from_file_location("em", sys.argv[1])
    em = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(em)
    out = sys.argv[2]
    img = lambda n, h, w: "input:%dx3x%dx%d" % (n, h, w)
    # name -> (model, example args, input names, output names, dynamic axes, three sizes)
    table = {
        "text_det": lambda: (em.randomize_bn(TextDet()), (torch.randn(1, 3, 320, 320),), ["input"], ["maps"],
                             {"input": {0: "batch", 2: "h", 3: "w"}, "maps": {0: "batch", 2: "h", 3: "w"}},
                             [img(1, 320, 320), img(1, 480, 640), img(2, 256, 384)]),
        "crnn_rec": lambda: (em.randomize_bn(CRNN()), (torch.randn(1, 3, 32, 160),), ["input"], ["logits"],
                             {"input": {0: "batch", 3: "w"}, "logits": {0: "batch", 1: "steps"}},
                             [img(1, 32, 100), img(2, 32, 160), img(1, 32, 320)]),
        "yolo_nms": lambda: (YoloNMS(em.randomize_bn(em.TinyYolo(nc=8))), (torch.randn(1, 3, 320, 320),), ["images"], ["boxes", "scores"],
                             {"images": {2: "h", 3: "w"}, "boxes": {0: "kept"}, "scores": {0: "kept"}},
                             ["images:1x3x320x320", "images:1x3x416x416", "images:1x3x480x640"]),
    }
    for name in ("resnet50", "efficientnet_b0", "vit_b_16"):
        table[name] = (lambda n: lambda: em.MODELS[n]() + ([img(1, 224, 224), img(4, 224, 224), img(8, 224, 224)],))(name)
    table["bert_base"] = lambda: em.MODELS["bert_base"]() + (["input_ids:1x128 attention_mask:1x128", "input_ids:4x128 attention_mask:4x128",
                                                              "input_ids:2x64 attention_mask:2x64"],)
    for name in sys.argv[3:]:
        m, args, inames, onames, dyn, sizes = table[name]()
        if name == "vit_b_16":  # torchvision's zero-initialized head would make every output 0
            torch.nn.init.normal_(m.heads.head.weight, std=0.02)
            torch.nn.init.normal_(m.heads.head.bias, std=0.02)
        m.eval()
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        with torch.no_grad():
            torch.onnx.export(m, args, os.path.join(d, "model.onnx"), input_names=inames, output_names=onames,
                              dynamic_axes=dyn, opset_version=17, do_constant_folding=True)
        with open(os.path.join(d, "sizes.txt"), "w") as f:
            for s in sizes:
                f.write(" ".join("--shape " + x for x in s.split()) + "\n")
        print(name, os.path.getsize(os.path.join(d, "model.onnx")) // 1024, "KiB", flush=True)


if __name__ == "__main__":
    main()
