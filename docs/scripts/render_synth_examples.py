"""Render coronal + sagittal views of synthetic volumes (docs/images/synth_*.png)."""
import sys
import numpy as np, matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from bodyscore.synth import generate_volume, SynthConfig

def views(seed, out, cfg=SynthConfig(partial_probability=0.0, slice_spacing_mm=(2.0, 3.0)), shape=(384,384), coronal_y=None):
    ct = generate_volume(seed, cfg, shape_xy=shape)
    v = ct.volume; a = v.array
    nz, ny, nx = a.shape; dz, dy, dx = v.spacing_mm
    iy = lambda y: int(np.clip(round((y - v.affine[1, 3]) / dy), 0, ny - 1))
    ix = lambda x: int(np.clip(round((x - v.affine[0, 3]) / dx), 0, nx - 1))
    from bodyscore.synth.phantom import _Phantom
    ph = _Phantom(ct.plan, np.random.default_rng(0), False)
    ycor = ph.spine_y(ct.landmarks_mm["Th8"]) + 40 * ct.plan.scale if coronal_y is None else coronal_y
    fig, ax = plt.subplots(1, 3, figsize=(10.5, 6.2), gridspec_kw={"width_ratios": [1, 1, 1]})
    ext_c = [v.affine[0, 3], v.affine[0, 3] + dx * nx, v.z_mm[0], v.z_mm[-1]]
    ext_s = [v.affine[1, 3], v.affine[1, 3] + dy * ny, v.z_mm[0], v.z_mm[-1]]
    ax[0].imshow(a[:, iy(ycor), :], cmap="gray", vmin=-1000, vmax=1500, origin="lower", extent=ext_c)
    ax[0].set_title(f"coronal (y={ycor:.0f} mm)", fontsize=8)
    ax[1].imshow(a[:, :, ix(0.0)], cmap="gray", vmin=-1000, vmax=1500, origin="lower", extent=ext_s)
    ax[1].set_title("sagittal x=0 (anterior →)", fontsize=8)
    ax[2].imshow(a[:, :, ix(-55 * ct.plan.scale)], cmap="gray", vmin=-1000, vmax=1500, origin="lower", extent=ext_s)
    ax[2].set_title("sagittal x=-55 mm (patient right)", fontsize=8)
    for name, z in ct.landmarks_mm.items():
        if ct.landmarks_k[name] is not None and not name[0] in "LTC" or name in ("L1", "Th12", "Th1", "C1", "L5"):
            if ct.landmarks_k[name] is None: continue
            ax[1].axhline(z, color="r", lw=0.3); ax[1].text(ext_s[1], z, " " + name, fontsize=5, color="r", va="center")
    for a_ in ax: a_.tick_params(labelsize=6)
    p = ct.plan
    fig.suptitle(f"synthetic CT seed {seed}: {p.height_cm:.0f} cm, arms {'up' if p.arms_up else 'down'}, "
                 f"contrast {p.contrast}, table {v.meta['table']}, noise {v.meta['noise_sd_hu']:.0f} HU, "
                 f"shape {v.shape}, spacing {tuple(round(s, 2) for s in v.spacing_mm)} mm; window [-1000, 1500]", fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(out)

if __name__ == "__main__":
    for s in sys.argv[2:]:
        views(int(s), f"{sys.argv[1]}/synth_{s}.png")
