// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SumTree} from "../../src/libraries/SumTree.sol";

/// @notice In-memory Merkle sum tree builder for tests: the same encoding as SumTree and settlement/sum_tree.py
///         (odd levels padded with the empty node (0, 0)); `buildLiabilities` uses the liability leaf prefix.
library TreeBuilder {
    struct Tree {
        bytes32[][] h;
        uint256[][] s;
    }

    function build(address token, address[] memory accounts, uint256[] memory amounts)
        internal
        pure
        returns (Tree memory t)
    {
        return _build(token, accounts, amounts, false);
    }

    function buildLiabilities(address token, address[] memory accounts, uint256[] memory amounts)
        internal
        pure
        returns (Tree memory t)
    {
        return _build(token, accounts, amounts, true);
    }

    function _build(address token, address[] memory accounts, uint256[] memory amounts, bool liability)
        private
        pure
        returns (Tree memory t)
    {
        uint256 n = accounts.length;
        uint256 levels = 1;
        for (uint256 m = n; m > 1; m = (m + 1) / 2) {
            ++levels;
        }
        t.h = new bytes32[][](levels);
        t.s = new uint256[][](levels);
        t.h[0] = new bytes32[](n);
        t.s[0] = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            t.h[0][i] = liability
                ? SumTree.liabilityLeafHash(accounts[i], token, amounts[i])
                : SumTree.leafHash(accounts[i], token, amounts[i]);
            t.s[0][i] = amounts[i];
        }
        for (uint256 l = 1; l < levels; ++l) {
            uint256 m = t.h[l - 1].length;
            uint256 k = (m + 1) / 2;
            t.h[l] = new bytes32[](k);
            t.s[l] = new uint256[](k);
            for (uint256 j; j < k; ++j) {
                bytes32 lh = t.h[l - 1][2 * j];
                uint256 ls = t.s[l - 1][2 * j];
                (bytes32 rh, uint256 rs) =
                    2 * j + 1 < m ? (t.h[l - 1][2 * j + 1], t.s[l - 1][2 * j + 1]) : (bytes32(0), 0);
                t.h[l][j] = SumTree.nodeHash(lh, ls, rh, rs);
                t.s[l][j] = ls + rs;
            }
        }
    }

    function root(Tree memory t) internal pure returns (bytes32) {
        return t.h[0].length == 0 ? bytes32(0) : t.h[t.h.length - 1][0];
    }

    function total(Tree memory t) internal pure returns (uint256) {
        return t.h[0].length == 0 ? 0 : t.s[t.s.length - 1][0];
    }

    function proof(Tree memory t, uint256 index) internal pure returns (SumTree.Node[] memory p) {
        uint256 depth = t.h.length - 1;
        p = new SumTree.Node[](depth);
        for (uint256 l; l < depth; ++l) {
            uint256 j = index ^ 1;
            p[l] = j < t.h[l].length ? SumTree.Node(t.h[l][j], t.s[l][j]) : SumTree.Node(bytes32(0), 0);
            index >>= 1;
        }
    }
}
