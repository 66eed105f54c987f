// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";

import {SumTreeVerifier} from "../../src/SumTreeVerifier.sol";
import {SumTree} from "../../src/libraries/SumTree.sol";
import {TreeBuilder} from "../helpers/TreeBuilder.sol";

contract SumTreeTest is Test {
    using TreeBuilder for TreeBuilder.Tree;

    SumTreeVerifier internal v;
    address internal constant TOKEN = address(0x7070);

    function setUp() public {
        v = new SumTreeVerifier();
    }

    function _accounts(uint256 n) internal pure returns (address[] memory a) {
        a = new address[](n);
        for (uint256 i; i < n; ++i) {
            a[i] = address(uint160(0x1000 + i));
        }
    }

    function _amounts(uint256 n, uint256 seed) internal pure returns (uint256[] memory a) {
        a = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            a[i] = uint256(keccak256(abi.encode(seed, i))) % 1e24;
        }
    }

    function _verifyAll(address[] memory acc, uint256[] memory amt) internal view {
        TreeBuilder.Tree memory t = TreeBuilder.build(TOKEN, acc, amt);
        uint256 sum;
        for (uint256 i; i < acc.length; ++i) {
            assertTrue(v.verify(t.root(), t.total(), acc[i], TOKEN, amt[i], i, t.proof(i)), "leaf verifies");
            sum += amt[i];
        }
        assertEq(t.total(), sum, "total is the sum of the leaves");
    }

    // ------------------------------------------------------------------ encoding

    function test_leafHash_isDomainSeparatedPackedEncoding() public view {
        assertEq(
            v.leafHash(address(1), TOKEN, 5),
            keccak256(abi.encodePacked(uint8(0), address(1), TOKEN, uint256(5)))
        );
    }

    function test_liabilityLeaf_hasItsOwnPrefix_andVerifiesOnlyAsLiability() public view {
        assertEq(
            v.liabilityLeafHash(address(1), TOKEN, 5),
            keccak256(abi.encodePacked(uint8(2), address(1), TOKEN, uint256(5)))
        );
        address[] memory acc = _accounts(5);
        uint256[] memory amt = _amounts(5, 9);
        TreeBuilder.Tree memory t = TreeBuilder.buildLiabilities(TOKEN, acc, amt);
        for (uint256 i; i < 5; ++i) {
            assertTrue(v.verifyLiability(t.root(), t.total(), acc[i], TOKEN, amt[i], i, t.proof(i)));
            assertFalse(v.verify(t.root(), t.total(), acc[i], TOKEN, amt[i], i, t.proof(i)), "not as a claim");
        }
        TreeBuilder.Tree memory c = TreeBuilder.build(TOKEN, acc, amt);
        assertFalse(
            v.verifyLiability(c.root(), c.total(), acc[0], TOKEN, amt[0], 0, c.proof(0)), "claim != debt"
        );
    }

    /// Known-answer vector shared with tests/settlement/test_sum_tree.py.
    function test_knownAnswerVector() public view {
        address[] memory acc = new address[](3);
        acc[0] = address(0x1111111111111111111111111111111111111111);
        acc[1] = address(0x2222222222222222222222222222222222222222);
        acc[2] = address(0x3333333333333333333333333333333333333333);
        uint256[] memory amt = new uint256[](3);
        amt[0] = 1_000_000;
        amt[1] = 0;
        amt[2] = 2_500_000;
        TreeBuilder.Tree memory t =
            TreeBuilder.build(address(0xaAaAaAaaAaAaAaaAaAAAAAAAAaaaAaAaAaaAaaAa), acc, amt);
        assertEq(t.total(), 3_500_000);
        assertEq(t.root(), 0x44c1ae5393201d6a504771bcf62ae23fda2bb2525f813cf6ecc681c29e44680b);
    }

    function testFuzz_nodeHash_assemblyMatchesEncodePacked(bytes32 lh, uint256 ls, bytes32 rh, uint256 rs)
        public
        view
    {
        assertEq(v.nodeHash(lh, ls, rh, rs), keccak256(abi.encodePacked(uint8(1), lh, ls, rh, rs)));
    }

    // ------------------------------------------------------------------ shapes

    function test_singleLeaf_rootIsLeafHash_emptyProof() public view {
        address[] memory acc = _accounts(1);
        uint256[] memory amt = _amounts(1, 1);
        TreeBuilder.Tree memory t = TreeBuilder.build(TOKEN, acc, amt);
        assertEq(t.root(), v.leafHash(acc[0], TOKEN, amt[0]));
        assertEq(t.proof(0).length, 0);
        assertTrue(v.verify(t.root(), amt[0], acc[0], TOKEN, amt[0], 0, t.proof(0)));
        assertFalse(v.verify(t.root(), amt[0], acc[0], TOKEN, amt[0], 1, t.proof(0)), "index out of range");
    }

    function test_oddCounts_paddedWithEmptyNode() public view {
        for (uint256 n = 1; n <= 9; ++n) {
            _verifyAll(_accounts(n), _amounts(n, n));
        }
        TreeBuilder.Tree memory t = TreeBuilder.build(TOKEN, _accounts(3), _amounts(3, 3));
        SumTree.Node[] memory p = t.proof(2);
        assertEq(p[0].hash, bytes32(0), "leaf 2 of 3 pairs with the empty node");
        assertEq(p[0].sum, 0);
    }

    function test_zeroAmountLeaves_verify() public view {
        uint256[] memory amt = new uint256[](5);
        amt[3] = 7;
        _verifyAll(_accounts(5), amt);
        uint256[] memory zeros = new uint256[](4);
        TreeBuilder.Tree memory t = TreeBuilder.build(TOKEN, _accounts(4), zeros);
        assertEq(t.total(), 0);
        assertTrue(v.verify(t.root(), 0, _accounts(4)[2], TOKEN, 0, 2, t.proof(2)));
    }

    function test_emptyRoot_neverVerifies() public view {
        SumTree.Node[] memory p = new SumTree.Node[](0);
        assertFalse(v.verify(bytes32(0), 0, address(0), address(0), 0, 0, p));
    }

    // ------------------------------------------------------------------ rejections

    function test_rejects_modifiedLeaf_wrongRoot_wrongTotal_wrongIndex() public view {
        address[] memory acc = _accounts(6);
        uint256[] memory amt = _amounts(6, 6);
        TreeBuilder.Tree memory t = TreeBuilder.build(TOKEN, acc, amt);
        SumTree.Node[] memory p = t.proof(4);
        bytes32 r = t.root();
        uint256 tot = t.total();
        assertTrue(v.verify(r, tot, acc[4], TOKEN, amt[4], 4, p));
        assertFalse(v.verify(r, tot, acc[4], TOKEN, amt[4] + 1, 4, p), "amount");
        assertFalse(v.verify(r, tot, acc[3], TOKEN, amt[4], 4, p), "account");
        assertFalse(v.verify(r, tot, acc[4], address(0xbeef), amt[4], 4, p), "token");
        assertFalse(v.verify(r, tot, acc[4], TOKEN, amt[4], 5, p), "index");
        assertFalse(v.verify(r, tot + 1, acc[4], TOKEN, amt[4], 4, p), "total");
        assertFalse(v.verify(keccak256("other"), tot, acc[4], TOKEN, amt[4], 4, p), "root");
    }

    /// A proof that stops one level early would present an inner node as a leaf: domain separation
    /// (0x00 vs 0x01 prefixes, 73 vs 129 bytes) means no leaf hashes to it.
    function test_rejects_truncatedProof_nodeCannotPoseAsLeaf() public view {
        address[] memory acc = _accounts(4);
        uint256[] memory amt = _amounts(4, 4);
        TreeBuilder.Tree memory t = TreeBuilder.build(TOKEN, acc, amt);
        SumTree.Node[] memory full = t.proof(0);
        SumTree.Node[] memory cut = new SumTree.Node[](1);
        cut[0] = full[1];
        assertFalse(v.verify(t.root(), t.total(), acc[0], TOKEN, t.s[1][0], 0, cut));
    }

    function test_rejects_proofTooLong() public view {
        SumTree.Node[] memory p = new SumTree.Node[](SumTree.MAX_DEPTH + 1);
        (,, bool ok) = v.computeRoot(address(1), TOKEN, 1, 0, p);
        assertFalse(ok);
    }

    function test_rejects_sumOverflow() public view {
        SumTree.Node[] memory p = new SumTree.Node[](1);
        p[0] = SumTree.Node(bytes32(uint256(1)), type(uint256).max);
        (,, bool ok) = v.computeRoot(address(1), TOKEN, 1, 0, p);
        assertFalse(ok);
    }

    // ------------------------------------------------------------------ fuzz

    function testFuzz_everyLeafVerifies_andLeavesSumToTotal(uint8 n, uint256 seed) public view {
        n = uint8(bound(n, 1, 33));
        _verifyAll(_accounts(n), _amounts(n, seed));
    }

    /// No modification of a leaf (amount, account, index) or of one sibling verifies.
    function testFuzz_noModifiedLeafVerifies(uint8 n, uint256 seed, uint256 which, uint256 delta, uint8 what)
        public
        view
    {
        n = uint8(bound(n, 2, 20));
        which = bound(which, 0, n - 1);
        delta = bound(delta, 1, 1e30);
        address[] memory acc = _accounts(n);
        uint256[] memory amt = _amounts(n, seed);
        TreeBuilder.Tree memory t = TreeBuilder.build(TOKEN, acc, amt);
        SumTree.Node[] memory p = t.proof(which);
        address account = acc[which];
        uint256 amount = amt[which];
        uint256 index = which;
        what = what % 4;
        if (what == 0) amount += delta;
        else if (what == 1) account = address(uint160(account) ^ uint160(delta));
        else if (what == 2) index = (index + 1 + delta % (n - 1)) % n;
        else p[delta % p.length].sum += delta; // claim more by inflating a sibling's sum
        assertFalse(v.verify(t.root(), t.total(), account, TOKEN, amount, index, p));
    }

    /// Forging: arbitrary siblings for an arbitrary claim never verify against an honest root, so no set of
    /// forged leaves can prove more than the committed total.
    function testFuzz_forgedProofNeverVerifies(
        bytes32 s0,
        uint256 sum0,
        bytes32 s1,
        uint256 sum1,
        uint256 claim
    ) public view {
        address[] memory acc = _accounts(4);
        TreeBuilder.Tree memory t = TreeBuilder.build(TOKEN, acc, _amounts(4, 99));
        SumTree.Node[] memory p = new SumTree.Node[](2);
        p[0] = SumTree.Node(s0, bound(sum0, 0, 1e30));
        p[1] = SumTree.Node(s1, bound(sum1, 0, 1e30));
        claim = bound(claim, t.total() + 1, 1e31);
        for (uint256 i; i < 4; ++i) {
            assertFalse(v.verify(t.root(), t.total(), acc[i], TOKEN, claim, i, p));
        }
    }
}
