"""kptoolkit plugin: the Thin-Plate Spline Motion Model (Zhao & Zhang, CVPR 2022).

Entry points: generator `tpsmm`, masker `tpsmm_keypoints`, losses `tpsmm_equivariance`,
`tpsmm_warp`, `tpsmm_background`.
"""
