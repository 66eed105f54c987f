// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {console} from "forge-std/console.sol";

import {ClearingHouse} from "../../src/ClearingHouse.sol";
import {EscapeHatch} from "../../src/EscapeHatch.sol";
import {SumTree} from "../../src/libraries/SumTree.sol";
import {HxBase} from "../helpers/HxBase.sol";

/// @notice Gas of the v2 entry points, measured with cold accounts and storage (`vm.cool`), as a fresh transaction
///         sees them. `exec` is the call's execution gas; `tx` adds the 21,000 base and the calldata cost
///         (4 per zero byte, 16 per other byte). 3 listed tokens; every withdrawal is signed (ECDSA) by a distinct
///         account (a fresh nonce-bitmap slot each: the worst case) to a fresh recipient.
///         Run: `cd contracts && forge test --match-contract GasReport -vv` (docs/benchmarks.md, "Contracts").
contract GasReport is HxBase {
    function _calldataGas(bytes memory data) internal pure returns (uint256 g) {
        g = 21_000;
        for (uint256 i; i < data.length; ++i) {
            g += data[i] == 0 ? 4 : 16;
        }
    }

    function _coolAll() internal {
        vm.cool(address(ch));
        vm.cool(address(vault));
        vm.cool(address(fund));
        vm.cool(address(hatch));
        vm.cool(address(ch.priceBounds()));
        vm.cool(address(usdc));
        vm.cool(address(weth));
        vm.cool(address(wbtc));
    }

    /// A batch with `k` signed withdrawals (distinct signers) and one new deposit credited.
    function _batchWith(uint256 k) internal returns (ClearingHouse.Batch memory b) {
        _deposit(alice, address(usdc), 1e15);
        _submit();
        _deposit(bob, address(usdc), 1e6);
        for (uint256 i; i < k; ++i) {
            (address signer, uint256 key) = makeAddrAndKey(string(abi.encodePacked("signer", vm.toString(i))));
            keyOf[signer] = key;
            address to = address(uint160(0xA0000000 + i));
            bal[address(usdc)][alice] -= 1e6; // the engine debits the signer's leaf; the model books it on alice
            pendingW.push(_signed(signer, address(usdc), 1e6, to));
        }
        b = _batch();
        b.data = abi.encodePacked(_data(b.batchId, 3), new bytes(64 * k)); // ~64 B of leaf changes per withdrawal
    }

    function _submitGas(uint256 k) internal returns (uint256 exec, uint256 txGas, uint256 payExec) {
        ClearingHouse.Batch memory b = _batchWith(k);
        _coolAll();
        vm.recordLogs();
        vm.prank(operator);
        ch.submitBatch(b);
        exec = vm.lastCallGas().gasTotalUsed;
        txGas = exec + _calldataGas(abi.encodeCall(ClearingHouse.submitBatch, (b)));
        _recordQueued(b.batchId);
        if (k == 0) return (exec, txGas, 0);
        vm.warp(block.timestamp + DISPUTE_WINDOW);
        ClearingHouse.Payout[] memory p = _payoutsOf(b.batchId);
        _coolAll();
        ch.executePayouts(b.batchId, p, k);
        payExec = vm.lastCallGas().gasTotalUsed;
        assertEq(usdc.balanceOf(address(uint160(0xA0000000))), 1e6);
    }

    function test_gasReport_submitBatch_bySignedWithdrawals() public {
        uint256[4] memory ks = [uint256(0), 1, 10, 50];
        console.log(
            "submitBatch (3 assets, 1 deposit credited) | signed withdrawals | exec | tx | executePayouts exec"
        );
        for (uint256 i; i < ks.length; ++i) {
            uint256 snap = vm.snapshotState();
            (uint256 exec, uint256 txGas, uint256 payExec) = _submitGas(ks[i]);
            console.log("  withdrawals", ks[i], exec, txGas);
            console.log("    executePayouts", payExec);
            vm.revertToState(snap);
        }
    }

    /// Escape in kind (no liabilities): proofs of 3 claim leaves, each of depth `depth`.
    function _escapeGas(uint256 depth) internal returns (uint256 exec, uint256 txGas) {
        uint256 amount = 1234e6;
        uint256 index = depth == 0 ? 0 : uint256(keccak256(abi.encode(depth))) % (1 << depth);
        SumTree.Node[] memory p = new SumTree.Node[](depth);
        bytes32 h = SumTree.leafHash(alice, address(usdc), amount);
        uint256 s = amount;
        for (uint256 i; i < depth; ++i) {
            p[i] = SumTree.Node(keccak256(abi.encode("sibling", i)), 1e6 * (i + 1));
            h = (index >> i) & 1 == 0
                ? SumTree.nodeHash(h, s, p[i].hash, p[i].sum)
                : SumTree.nodeHash(p[i].hash, p[i].sum, h, s);
            s += p[i].sum;
        }
        _deposit(bob, address(usdc), s); // the vault holds the whole tree's total
        ClearingHouse.Batch memory b = _batch();
        b.assets[0].claimsRoot = h;
        b.assets[0].claimsTotal = s;
        for (uint256 i; i < 3; ++i) {
            b.assets[i].liabilitiesRoot = 0; // empty trees: nothing to prove
            if (i > 0) b.assets[i].claimsRoot = 0;
        }
        _submit(b);
        _freeze();
        EscapeHatch.LeafProof[] memory c = new EscapeHatch.LeafProof[](3);
        c[0] = EscapeHatch.LeafProof(amount, index, p); // WETH and WBTC trees are empty: amount 0, no proof
        EscapeHatch.LeafProof[] memory l = new EscapeHatch.LeafProof[](0);
        ClearingHouse.AssetState[] memory a = b.assets;
        _coolAll();
        vm.prank(alice);
        hatch.escape(a, c, l, alice);
        exec = vm.lastCallGas().gasTotalUsed;
        txGas = exec + _calldataGas(abi.encodeCall(EscapeHatch.escape, (a, c, l, alice)));
        assertEq(usdc.balanceOf(alice), amount);
    }

    function test_gasReport_escape_byDepth() public {
        uint256[4] memory ds = [uint256(0), 10, 17, 20];
        console.log("escape in kind (1 non-empty asset of 3) | depth | exec | tx");
        for (uint256 i; i < ds.length; ++i) {
            uint256 snap = vm.snapshotState();
            (uint256 exec, uint256 txGas) = _escapeGas(ds[i]);
            console.log("  depth", ds[i], exec, txGas);
            vm.revertToState(snap);
        }
    }

    /// Escape with liabilities (basket): 3 claim + 3 liability proofs over 4 accounts.
    function test_gasReport_escape_basket() public {
        _deposit(alice, address(weth), 1e18);
        _deposit(bob, address(usdc), 5000e6);
        _deposit(carol, address(wbtc), 1e8);
        _submit();
        debt[address(usdc)][alice] = 1000e6;
        bal[address(usdc)][bob] += 1000e6;
        _submit();
        _freeze();
        (EscapeHatch.LeafProof[] memory c, EscapeHatch.LeafProof[] memory l) = _proofs(alice);
        ClearingHouse.AssetState[] memory a = _assets();
        _coolAll();
        vm.prank(alice);
        hatch.escape(a, c, l, alice);
        console.log(
            "escape basket (3 assets, claims + liabilities, depth 2) exec", vm.lastCallGas().gasTotalUsed
        );
    }

    function test_gasReport_userPaths() public {
        usdc.mint(alice, 2e6);
        vm.startPrank(alice);
        usdc.approve(address(vault), 2e6);
        vault.deposit(address(usdc), 1e6, alice);
        _coolAll();
        vault.deposit(address(usdc), 1e6, alice);
        console.log("deposit (cold) exec", vm.lastCallGas().gasTotalUsed);
        _coolAll();
        hatch.requestForcedWithdrawal(address(usdc), 1e6, alice);
        console.log("requestForcedWithdrawal exec", vm.lastCallGas().gasTotalUsed);
        vm.stopPrank();
        deps.push(Dep(1, alice, address(usdc), 1e6, uint64(block.timestamp)));
        deps.push(Dep(2, alice, address(usdc), 1e6, uint64(block.timestamp)));
        _credit(2);
        _submit();
        _submit();
        _coolAll();
        _challenge(watcher, 2);
        console.log("challengeBatch (3 tokens) exec", vm.lastCallGas().gasTotalUsed);
    }
}
